//! The decisions fitted between training and the final evaluation, on the validation split
//! (never on the test split): the temperature that calibrates the probabilities, then, for a
//! binary task, the threshold on the calibrated probability of the second class. Both are stored
//! in the Best Model, so `predict` decides exactly as the report does. The fitting itself is a
//! classifier's (`task::Classifier::fit_decisions`); this module holds the methods and the record.
pub mod temperature;
pub mod threshold;

use serde::Serialize;

use crate::config::ThresholdMetric;

/// What was fitted, and from what, for the report and metrics.json.
#[derive(Clone, Debug, Serialize)]
pub struct Decisions {
    pub temperature: f32,
    /// Where the temperature came from, in words.
    pub temperature_source: String,
    /// Binary: the decision threshold on the second class's probability.
    pub threshold: Option<f32>,
    pub threshold_source: Option<String>,
    /// `--threshold auto`: the metric maximised and its value against every candidate threshold
    /// on the validation split.
    #[serde(skip)]
    pub threshold_curve: Option<(ThresholdMetric, Vec<(f64, f64)>)>,
}

impl Decisions {
    /// A regression's record: nothing fitted.
    pub fn not_applicable() -> Decisions {
        Decisions { temperature: 1.0, temperature_source: NOT_APPLICABLE.to_string(), threshold: None, threshold_source: None, threshold_curve: None }
    }

    /// The report's rows: the temperature and a threshold with their sources; none for a
    /// regression's record.
    pub fn items(&self) -> Vec<(&'static str, String)> {
        if self.temperature_source == NOT_APPLICABLE {
            return Vec::new();
        }
        let mut items = vec![("Temperature", format!("{:.4}: {}", self.temperature, self.temperature_source))];
        if let (Some(t), Some(source)) = (self.threshold, &self.threshold_source) {
            items.extend([("Decision threshold", format!("{t:.4}")), ("Threshold source", source.clone())]);
        }
        items
    }

    /// One line for the log.
    pub fn describe(&self) -> String {
        if self.temperature_source == NOT_APPLICABLE {
            return format!("decisions: none ({NOT_APPLICABLE})");
        }
        let mut line = format!("decisions: temperature {:.4} ({})", self.temperature, self.temperature_source);
        if let (Some(t), Some(source)) = (self.threshold, &self.threshold_source) {
            line.push_str(&format!("; threshold {t:.4} ({source})"));
        }
        line
    }
}

/// A regression's decisions: there are none to fit.
const NOT_APPLICABLE: &str = "not applicable: a regression predicts a number";
