//! Compares our isolation forest with scikit-learn's on the same data: the fixture
//! (`fixtures/sklearn_iforest.csv`, made once by `fixtures/make_sklearn_iforest.py`)
//! holds the data and sklearn's scores, so Python is not needed here.

use linfa::prelude::*;
use linfa::Dataset;
use ndarray::Array2;
use omen_detector::model::iforest::IsolationForestParams;

fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    for (rank, &i) in order.iter().enumerate() {
        ranks[i] = rank as f64;
    }
    ranks
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let mean = (n - 1.0) / 2.0;
    let covariance: f64 = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - mean) * (y - mean))
        .sum();
    let variance: f64 = ra.iter().map(|x| (x - mean).powi(2)).sum();
    covariance / variance
}

#[test]
fn ranks_like_scikit_learn() {
    let text = include_str!("fixtures/sklearn_iforest.csv");
    let mut features = Vec::new();
    let mut outlier = Vec::new();
    let mut sklearn = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<f64> = line.split(',').map(|f| f.parse().unwrap()).collect();
        features.extend_from_slice(&fields[..3]);
        outlier.push(fields[3] == 1.0);
        sklearn.push(fields[4]);
    }
    let data = Array2::from_shape_vec((sklearn.len(), 3), features).unwrap();
    let forest = IsolationForestParams::new()
        .trees(500)
        .subsample(256)
        .isolate_out_of_range(false)
        .seed(1)
        .fit(&Dataset::from(data.clone()))
        .unwrap();
    let ours = forest.score(data.view()).to_vec();

    let correlation = spearman(&ours, &sklearn);
    assert!(correlation > 0.95, "Spearman correlation {correlation}");
    // Both put the planted outliers on top.
    let top = |scores: &[f64]| {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        order[..10].to_vec()
    };
    let ours_top = top(&ours);
    let sklearn_top = top(&sklearn);
    let planted_in_ours = ours_top.iter().filter(|&&i| outlier[i]).count();
    let planted_in_sklearn = sklearn_top.iter().filter(|&&i| outlier[i]).count();
    assert!(
        planted_in_ours >= planted_in_sklearn.saturating_sub(1),
        "{planted_in_ours} vs {planted_in_sklearn}"
    );
    // Scores on the same scale: mean absolute difference well under the score range.
    let difference: f64 = ours
        .iter()
        .zip(&sklearn)
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / ours.len() as f64;
    assert!(difference < 0.03, "mean |ours - sklearn| = {difference}");
    println!("spearman {correlation:.4}, planted in top 10: ours {planted_in_ours}, sklearn {planted_in_sklearn}, mean |diff| {difference:.4}");
}
