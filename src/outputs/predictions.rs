//! Predictions CSV: one row per image with the predicted class, its probability and one
//! probability column per class.
use anyhow::Result;

use crate::metrics::decide;

/// `truth`: the true class of each image where known; `splits`: each image's split, when the
/// predictions cover every split.
pub fn to_csv(
    images: &[String],
    truth: Option<&[String]>,
    probs: &[Vec<f32>],
    classes: &[String],
    splits: Option<&[String]>,
    threshold: Option<f32>,
) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["image_path".to_string()];
    if splits.is_some() {
        header.push("split".into());
    }
    if truth.is_some() {
        header.push("true_label".into());
    }
    header.extend(["predicted_label".to_string(), "confidence".to_string()]);
    header.extend(classes.iter().map(|c| format!("prob_{c}")));
    if truth.is_some() {
        header.push("correct".into());
    }
    w.write_record(&header)?;
    for (i, p) in probs.iter().enumerate() {
        let pred = decide(p, threshold);
        let mut rec = vec![images[i].clone()];
        if let Some(s) = splits {
            rec.push(s[i].clone());
        }
        if let Some(t) = truth {
            rec.push(t[i].clone());
        }
        rec.push(classes[pred].clone());
        rec.push(format!("{:.6}", p[pred]));
        rec.extend(p.iter().map(|v| format!("{v:.6}")));
        if let Some(t) = truth {
            rec.push((t[i] == classes[pred]).to_string());
        }
        w.write_record(&rec)?;
    }
    Ok(w.into_inner()?)
}
