//! ResNet (He et al., "Deep Residual Learning for Image Recognition", 2015), as torchvision
//! builds it; tch's own implementation already uses torchvision's parameter names.
use tch::nn;
use tch::vision::resnet as tv;

use super::Network;

pub fn resnet18(p: &nn::Path, num_classes: i64) -> Network {
    Network::new(tv::resnet18_no_final_layer(p), 0.0, nn::linear(p / "fc", 512, num_classes, Default::default()))
}

pub fn resnet34(p: &nn::Path, num_classes: i64) -> Network {
    Network::new(tv::resnet34_no_final_layer(p), 0.0, nn::linear(p / "fc", 512, num_classes, Default::default()))
}

pub fn resnet50(p: &nn::Path, num_classes: i64) -> Network {
    Network::new(tv::resnet50_no_final_layer(p), 0.0, nn::linear(p / "fc", 2048, num_classes, Default::default()))
}
