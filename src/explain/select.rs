//! Which images to explain, and for which output.
use crate::task::Task;

/// One image to explain: its position in the list, the output explained (a class, or 0 for a
/// regression's value) and why it was picked.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub position: usize,
    pub target: i64,
    pub why: String,
}

/// The report's picks among the test images: `limit` of them, or all when there are fewer.
/// Classification: for each class, its most confident correct image, explaining that class; then
/// the most confident mistakes, explaining the class predicted; then, if mistakes run out, the
/// least confident correct images. Regression: the highest and the lowest prediction, then the
/// largest errors. Ties go to the earlier image.
pub fn for_report(task: &Task, scores: &[Vec<f32>], truth: &[usize], values: &[f64], limit: usize) -> Vec<Pick> {
    let mut picks: Vec<Pick> = Vec::new();
    let push = |picks: &mut Vec<Pick>, position: usize, target: usize, why: String| {
        if picks.len() < limit && !picks.iter().any(|p| p.position == position) {
            picks.push(Pick { position, target: target as i64, why });
        }
    };
    if task.is_regression() {
        let predicted = task.predicted_values(scores);
        let mut order: Vec<usize> = (0..predicted.len()).collect();
        order.sort_by(|&a, &b| predicted[b].total_cmp(&predicted[a]).then(a.cmp(&b)));
        if let (Some(&high), Some(&low)) = (order.first(), order.last()) {
            push(&mut picks, high, 0, format!("the highest prediction, {:.4}", predicted[high]));
            push(&mut picks, low, 0, format!("the lowest prediction, {:.4}", predicted[low]));
        }
        let error = |i: usize| (predicted[i] - values[i]).abs();
        order.sort_by(|&a, &b| error(b).total_cmp(&error(a)).then(a.cmp(&b)));
        for i in order {
            push(&mut picks, i, 0, format!("a large error: true {:.4}, predicted {:.4}", values[i], predicted[i]));
        }
        return picks;
    }
    let decided: Vec<usize> = scores.iter().map(|p| task.decide(p)).collect();
    for (c, class) in task.classes.iter().enumerate() {
        let best = (0..scores.len())
            .filter(|&i| truth[i] == c && decided[i] == c)
            .max_by(|&a, &b| scores[a][c].total_cmp(&scores[b][c]).then(b.cmp(&a)));
        if let Some(i) = best {
            push(&mut picks, i, c, format!("the most confident correct {}", crate::error::short(class)));
        }
    }
    let mut wrong: Vec<usize> = (0..scores.len()).filter(|&i| decided[i] != truth[i]).collect();
    wrong.sort_by(|&a, &b| scores[b][decided[b]].total_cmp(&scores[a][decided[a]]).then(a.cmp(&b)));
    for i in wrong {
        let why = format!(
            "a confident mistake: true {}, predicted {}",
            crate::error::short(&task.classes[truth[i]]),
            crate::error::short(&task.classes[decided[i]])
        );
        push(&mut picks, i, decided[i], why);
    }
    let mut unsure: Vec<usize> = (0..scores.len()).collect();
    unsure.sort_by(|&a, &b| task.confidence(&scores[a]).total_cmp(&task.confidence(&scores[b])).then(a.cmp(&b)));
    // What is left is decided correctly (every mistake is in already), however confident: named
    // by its rank among those, never "uncertain" at 99.9%.
    let mut first = true;
    for i in unsure {
        let rank = if first { "the least" } else { "the next least" };
        let why = format!("{rank} confident correct {} ({:.1}%)", crate::error::short(&task.classes[decided[i]]), 100.0 * task.confidence(&scores[i]));
        let before = picks.len();
        push(&mut picks, i, decided[i], why);
        first &= picks.len() == before;
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskKind;

    fn task() -> Task {
        Task::for_training(TaskKind::Classification, &["a".into(), "b".into(), "c".into()], None, "label", "m.csv").unwrap()
    }

    #[test]
    fn the_report_shows_each_class_then_mistakes_then_uncertain_images() {
        let scores = vec![
            vec![0.9, 0.05, 0.05], // 0: a, right
            vec![0.6, 0.3, 0.1],   // 1: a, right, less sure
            vec![0.1, 0.8, 0.1],   // 2: b, right
            vec![0.7, 0.2, 0.1],   // 3: c, predicted a (a mistake)
            vec![0.2, 0.5, 0.3],   // 4: c, predicted b (a surer-less mistake)
        ];
        let truth = [0, 0, 1, 2, 2];
        let picks = for_report(&task(), &scores, &truth, &[], 5);
        let order: Vec<(usize, i64)> = picks.iter().map(|p| (p.position, p.target)).collect();
        // No correct c: the classes a and b, the mistakes by confidence, then the uncertain rest.
        assert_eq!(order, [(0, 0), (2, 1), (3, 0), (4, 1), (1, 0)]);
        assert!(picks[0].why.contains("most confident correct a") && picks[2].why.contains("true c, predicted a"));
        assert!(picks[4].why.contains("the least confident correct a (60.0%)"), "{}", picks[4].why);
        assert_eq!(for_report(&task(), &scores, &truth, &[], 2).len(), 2);
        assert_eq!(for_report(&task(), &scores, &truth, &[], 50).len(), 5, "never an image twice");
    }

    #[test]
    fn predict_explains_the_least_confident_first() {
        let scores = vec![vec![0.9, 0.05, 0.05], vec![0.4, 0.35, 0.25], vec![0.1, 0.8, 0.1]];
        let picks = for_predict(&task(), &scores, 2);
        assert_eq!(picks.iter().map(|p| p.position).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(picks[1].target, 1);
    }

    #[test]
    fn a_regression_shows_its_extremes_then_its_largest_errors() {
        // Mean 0 and standard deviation 1: the scores are the values.
        let t = Task::for_regression(&[-1.0, 1.0], "age", crate::config::RegressionLoss::Mse, None).unwrap();
        let scores = vec![vec![5.0], vec![1.0], vec![3.0], vec![2.0]];
        let values = [5.0, 1.0, 9.0, 2.5];
        let picks = for_report(&t, &scores, &[0; 4], &values, 3);
        assert_eq!(picks.iter().map(|p| p.position).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(picks.iter().all(|p| p.target == 0));
        assert!(picks[2].why.contains("true 9.0000, predicted 3.0000"));
        assert_eq!(for_predict(&t, &scores, 9).iter().map(|p| p.position).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }
}

/// predict's picks: the least confident predictions first (classification), or the images in
/// their listed order (regression, which has no confidence), explaining the output predicted.
pub fn for_predict(task: &Task, scores: &[Vec<f32>], limit: usize) -> Vec<Pick> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    if !task.is_regression() {
        order.sort_by(|&a, &b| task.confidence(&scores[a]).total_cmp(&task.confidence(&scores[b])).then(a.cmp(&b)));
    }
    order
        .into_iter()
        .take(limit)
        .map(|i| {
            if task.is_regression() {
                Pick { position: i, target: 0, why: "the predicted value".into() }
            } else {
                let c = task.decide(&scores[i]);
                Pick { position: i, target: c as i64, why: format!("predicted {} ({:.1}%)", crate::error::short(&task.classes[c]), 100.0 * task.confidence(&scores[i])) }
            }
        })
        .collect()
}
