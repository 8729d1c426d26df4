//! Isolation forest (Liu, Ting and Zhou, 2008) as a linfa algorithm on ndarray.
//!
//! `IsolationForestParams` (unchecked builder) → `.check()` → `IsolationForestValidParams`
//! → `.fit(&dataset)` → [`IsolationForest`], which scores one row or many in [0, 1]:
//! `s(x) = 2^(-E[h(x)] / c(ψ))`, where `h` is the path length to isolate `x` (plus `c` of
//! the leaf's size) and `ψ` the subsample size. Any number of features. Deterministic for
//! a seed: the same data and seed give the same forest, bit for bit.

use linfa::dataset::{DatasetBase, Records};
use linfa::param_guard::ParamGuard;
use linfa::traits::Fit;
use ndarray::{ArrayBase, ArrayView1, ArrayView2, Data, Ix2};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Hyperparameters out of their range: what [`ParamGuard::check`] finds, before any data.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IsolationForestParamsError {
    #[error("trees must be at least 1")]
    NoTrees,
    #[error("subsample must be at least 2, got {0}")]
    SubsampleTooSmall(usize),
    #[error("max_depth must be between 1 and 64, got {0}")]
    InvalidDepth(usize),
}

/// Why a forest was not fitted: the data (what fitting checked parameters can still
/// meet), or, as in linfa, parameters found out of range when unchecked ones are fitted.
#[derive(Debug, Error)]
pub enum IsolationForestFitError {
    #[error(transparent)]
    Params(#[from] IsolationForestParamsError),
    #[error("need at least 2 rows and 1 feature to fit, got {rows}x{features}")]
    NotEnoughData { rows: usize, features: usize },
    #[error("row {row}, feature {feature} is not finite")]
    NonFinite { row: usize, feature: usize },
    /// What linfa's `Fit` requires an error to hold; this crate's own code never returns it.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// The checked hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestValidParams {
    trees: usize,
    subsample: usize,
    max_depth: Option<usize>,
    seed: u64,
    isolate_out_of_range: bool,
}

/// The unchecked builder: trees 100, subsample 256, depth `ceil(log2 ψ)`, seed 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestParams(IsolationForestValidParams);

impl Default for IsolationForestParams {
    fn default() -> Self {
        Self(IsolationForestValidParams {
            trees: 100,
            subsample: 256,
            max_depth: None,
            seed: 0,
            isolate_out_of_range: true,
        })
    }
}

impl IsolationForestParams {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trees(mut self, trees: usize) -> Self {
        self.0.trees = trees;
        self
    }

    /// Rows drawn (without replacement) for each tree; fewer when the data has fewer.
    pub fn subsample(mut self, subsample: usize) -> Self {
        self.0.subsample = subsample;
        self
    }

    /// Height limit; by default `ceil(log2 ψ)`, the paper's choice.
    pub fn max_depth(mut self, max_depth: usize) -> Self {
        self.0.max_depth = Some(max_depth);
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }

    /// Whether a point outside the range a split's rows spanned is isolated at that
    /// split (default) or follows the split like any other (the original algorithm).
    pub fn isolate_out_of_range(mut self, isolate: bool) -> Self {
        self.0.isolate_out_of_range = isolate;
        self
    }
}

impl ParamGuard for IsolationForestParams {
    type Checked = IsolationForestValidParams;
    type Error = IsolationForestParamsError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        let p = &self.0;
        if p.trees == 0 {
            return Err(IsolationForestParamsError::NoTrees);
        }
        if p.subsample < 2 {
            return Err(IsolationForestParamsError::SubsampleTooSmall(p.subsample));
        }
        if let Some(depth) = p.max_depth {
            if !(1..=64).contains(&depth) {
                return Err(IsolationForestParamsError::InvalidDepth(depth));
            }
        }
        Ok(p)
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        self.check_ref()?;
        Ok(self.0)
    }
}

/// Average path length of an unsuccessful search in a binary search tree of `n` nodes.
pub fn average_path_length(n: usize) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// A node in preorder: a split's left child follows it, `right` indexes its right child.
/// A leaf (`feature == LEAF`) holds in `value` its depth plus `c(size)`, in `right` its
/// size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Node {
    feature: u32,
    right: u32,
    value: f64,
}

/// Kept per node only when out-of-range points are isolated: the range `[low, high]` a
/// split's rows spanned on its feature and the node's depth. A point outside the range is
/// isolated there (path length = the depth, as for a leaf of one row), so a point beyond
/// everything seen in training scores above every training row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Bounds {
    low: f64,
    high: f64,
    depth: f64,
}

const LEAF: u32 = u32::MAX;

/// Trees no deeper than this are also laid out as [`CompleteTrees`].
const MAX_COMPLETE_DEPTH: usize = 8;
/// Rows of at most this many features are scored from a small array.
const SMALL_ROW: usize = 8;
/// Trees descended side by side: independent descents keep the core busy while each
/// waits for its loads.
const LOCKSTEP: usize = 8;

/// Index into [`CompleteTrees::leaf_values`] by a leaf's depth and size.
struct LeafIndices {
    by_depth_and_size: Vec<Option<u8>>,
    sizes: usize,
}

/// The trees again, each padded to a complete binary tree of one depth in breadth-first
/// order (children of `i` at `2i + 1` and `2i + 2`): a row takes exactly `depth` steps
/// down every tree, a branch-free descent that scores several times faster than chasing
/// `right` links, to the same leaf. A leaf above the bottom becomes splits at +inf (every
/// number goes left) over copies of its value, so every path under it ends there. Leaves
/// index a table of the forest's distinct leaf values (depth plus `c(size)`: few).
///
/// Each tree takes a block of `2^depth` entries in `split_features` and `thresholds` (its
/// `2^depth - 1` splits and one unused) and in `leaves`: a power of two, so a position
/// masked by the block size needs no bounds check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CompleteTrees {
    depth: usize,
    split_features: Vec<u8>,
    thresholds: Vec<f64>,
    /// Indices into `leaf_values`.
    leaves: Vec<u8>,
    leaf_values: Vec<f64>,
}

impl CompleteTrees {
    /// `None` for trees too deep, too many features or too many distinct leaf values.
    fn build(
        nodes: &[Node],
        roots: &[u32],
        features: usize,
        depth: usize,
        subsample: usize,
    ) -> Option<Self> {
        if features > usize::from(u8::MAX) + 1 || depth > MAX_COMPLETE_DEPTH {
            return None;
        }
        let block = 1 << depth;
        let mut trees = Self {
            depth,
            split_features: vec![0; roots.len() * block],
            thresholds: vec![f64::INFINITY; roots.len() * block],
            leaves: vec![0; roots.len() * block],
            leaf_values: Vec::new(),
        };
        // A leaf's value depends on its depth and size only: its index, by both.
        let mut indices = LeafIndices {
            by_depth_and_size: vec![None; (depth + 1) * (subsample + 1)],
            sizes: subsample + 1,
        };
        for (tree, &root) in roots.iter().enumerate() {
            trees.place(nodes, root as usize, tree, 0, 0, &mut indices)?;
        }
        trees.leaf_values.shrink_to_fit();
        Some(trees)
    }

    /// Places the subtree at `nodes[index]` at complete-tree position `position` (level
    /// `level`) of tree `tree`.
    fn place(
        &mut self,
        nodes: &[Node],
        index: usize,
        tree: usize,
        position: usize,
        level: usize,
        indices: &mut LeafIndices,
    ) -> Option<()> {
        let block = 1 << self.depth;
        let node = nodes[index];
        if node.feature == LEAF {
            let key = level * indices.sizes + node.right as usize;
            let slot = indices.by_depth_and_size.get_mut(key)?;
            let value = match *slot {
                Some(value) => value,
                None => {
                    let value = u8::try_from(self.leaf_values.len()).ok()?;
                    self.leaf_values.push(node.value);
                    *slot = Some(value);
                    value
                }
            };
            // Splits at +inf (already there) over copies of the leaf: every path below
            // ends at the same value, NaN's (which goes right) included.
            let width = 1 << (self.depth - level);
            let first = (position + 1) * width - block;
            let leaves = &mut self.leaves[tree * block..(tree + 1) * block];
            leaves[first..first + width].fill(value);
            return Some(());
        }
        self.split_features[tree * block + position] = node.feature as u8;
        self.thresholds[tree * block + position] = node.value;
        self.place(nodes, index + 1, tree, 2 * position + 1, level + 1, indices)?;
        self.place(
            nodes,
            node.right as usize,
            tree,
            2 * position + 2,
            level + 1,
            indices,
        )
    }

    /// The summed path lengths of a row with every feature present.
    fn total_path(&self, row: &[f64]) -> f64 {
        // Copied into an array of a power-of-two width at least the features', the row
        // is indexed by a masked feature without bounds checks. Few features (the
        // detector's case) take a small array, not one to clear for all 256.
        if row.len() <= SMALL_ROW {
            let mut padded = [0.0; SMALL_ROW];
            padded[..row.len()].copy_from_slice(row);
            self.by_depth(&padded)
        } else {
            let mut padded = [0.0; 256];
            let width = row.len().min(padded.len());
            padded[..width].copy_from_slice(&row[..width]);
            self.by_depth(&padded)
        }
    }

    /// [`total_path`](Self::total_path) for a row padded to `ROW` features.
    fn by_depth<const ROW: usize>(&self, row: &[f64; ROW]) -> f64 {
        match self.depth {
            0 => self.leaf_values_summed(),
            1 => self.sum_paths::<2, ROW>(row),
            2 => self.sum_paths::<4, ROW>(row),
            3 => self.sum_paths::<8, ROW>(row),
            4 => self.sum_paths::<16, ROW>(row),
            5 => self.sum_paths::<32, ROW>(row),
            6 => self.sum_paths::<64, ROW>(row),
            7 => self.sum_paths::<128, ROW>(row),
            _ => self.sum_paths::<256, ROW>(row),
        }
    }

    /// Trees of one leaf each.
    fn leaf_values_summed(&self) -> f64 {
        self.leaves.iter().fold(0.0, |total, &leaf| {
            total + self.leaf_values[usize::from(leaf)]
        })
    }

    /// [`total_path`](Self::total_path) for trees of blocks of `BLOCK` (`2^depth`).
    fn sum_paths<const BLOCK: usize, const ROW: usize>(&self, row: &[f64; ROW]) -> f64 {
        let trees = self.leaves.len() / BLOCK;
        let mut total = 0.0;
        let mut first = 0;
        while first < trees {
            if trees - first >= LOCKSTEP {
                let positions = self.descend::<LOCKSTEP, BLOCK, ROW>(row, first);
                for (k, position) in positions.into_iter().enumerate() {
                    total += self.leaf_value::<BLOCK>(first + k, position);
                }
                first += LOCKSTEP;
            } else {
                let [position] = self.descend::<1, BLOCK, ROW>(row, first);
                total += self.leaf_value::<BLOCK>(first, position);
                first += 1;
            }
        }
        total
    }

    /// Bottom positions of `row` in trees `first..first + N`, descended side by side.
    fn descend<const N: usize, const BLOCK: usize, const ROW: usize>(
        &self,
        row: &[f64; ROW],
        first: usize,
    ) -> [usize; N] {
        // The N trees' blocks lie side by side: one span from one base, so tree `k`'s
        // entries sit at a constant offset `k * BLOCK` instead of behind a pointer of its
        // own (2N pointers and N positions do not fit in the registers).
        let span = first * BLOCK..(first + N) * BLOCK;
        let features = &self.split_features[span.clone()];
        let thresholds = &self.thresholds[span];
        let mut positions = [0usize; N];
        for _ in 0..self.depth {
            for (k, position) in positions.iter_mut().enumerate() {
                // Positions stay below BLOCK - 1 on the way down; the mask tells the
                // compiler so, and so `k * BLOCK + at` is inside the span.
                let at = *position & (BLOCK - 1);
                // Features are below ROW (see `total_path`): the mask changes nothing.
                let x = row[usize::from(features[k * BLOCK + at]) & (ROW - 1)];
                // Left on `x < threshold`, else (NaN too) right, as the links go.
                let goes_left = x < thresholds[k * BLOCK + at];
                *position = 2 * at + 2 - usize::from(goes_left);
            }
        }
        positions
    }

    fn leaf_value<const BLOCK: usize>(&self, tree: usize, position: usize) -> f64 {
        let leaf = self.leaves[tree * BLOCK + position + 1 - BLOCK];
        self.leaf_values[usize::from(leaf)]
    }

    fn heap_bytes(&self) -> usize {
        self.split_features.capacity()
            + self.leaves.capacity()
            + (self.thresholds.capacity() + self.leaf_values.capacity())
                * std::mem::size_of::<f64>()
    }
}

/// A fitted forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    /// Preorder nodes; emptied when `complete` holds the trees.
    nodes: Vec<Node>,
    /// Parallel to `nodes` when out-of-range points are isolated, else empty.
    bounds: Vec<Bounds>,
    roots: Vec<u32>,
    complete: Option<CompleteTrees>,
    features: usize,
    normaliser: f64,
}

struct Builder {
    /// The training rows, column by column (contiguous per feature).
    columns: Vec<f64>,
    rows: usize,
    features: usize,
    rng: Xoshiro256PlusPlus,
    nodes: Vec<Node>,
    bounds: Option<Vec<Bounds>>,
    max_depth: usize,
    /// The deepest leaf so far.
    deepest: usize,
    /// By leaf size, its average path length once computed (NaN before).
    path_lengths: Vec<f64>,
}

/// Smallest and largest of `column` at `rows` (finite values), in four independent
/// running pairs so the comparisons overlap.
fn range_of(column: &[f64], rows: &[usize]) -> (f64, f64) {
    let mut low = [f64::INFINITY; 4];
    let mut high = [f64::NEG_INFINITY; 4];
    let mut chunks = rows.chunks_exact(4);
    for chunk in &mut chunks {
        for k in 0..4 {
            let x = column[chunk[k]];
            low[k] = if x < low[k] { x } else { low[k] };
            high[k] = if x > high[k] { x } else { high[k] };
        }
    }
    for &row in chunks.remainder() {
        let x = column[row];
        low[0] = if x < low[0] { x } else { low[0] };
        high[0] = if x > high[0] { x } else { high[0] };
    }
    let low = low
        .into_iter()
        .fold(f64::INFINITY, |a, b| if b < a { b } else { a });
    let high = high
        .into_iter()
        .fold(f64::NEG_INFINITY, |a, b| if b > a { b } else { a });
    (low, high)
}

impl Builder {
    fn push(&mut self, node: Node, low: f64, high: f64, depth: usize) {
        self.nodes.push(node);
        if let Some(bounds) = &mut self.bounds {
            bounds.push(Bounds {
                low,
                high,
                depth: depth as f64,
            });
        }
    }

    /// [`average_path_length`], remembered: a fit asks for the same few sizes thousands
    /// of times, and `ln` is not cheap.
    fn average_path_length(&mut self, size: usize) -> f64 {
        match self.path_lengths.get(size) {
            Some(&known) if !known.is_nan() => known,
            Some(_) => {
                let length = average_path_length(size);
                self.path_lengths[size] = length;
                length
            }
            None => average_path_length(size),
        }
    }

    fn push_leaf(&mut self, depth: usize, size: usize) {
        self.deepest = self.deepest.max(depth);
        // A leaf has no right child: `right` keeps its size instead.
        let node = Node {
            feature: LEAF,
            right: size as u32,
            value: depth as f64 + self.average_path_length(size),
        };
        self.push(node, 0.0, 0.0, depth);
    }

    /// Grows the subtree of `rows`; `spare` (as long) is room to partition them into.
    fn grow(&mut self, rows: &mut [usize], spare: &mut [usize], depth: usize) {
        if depth >= self.max_depth || rows.len() <= 1 {
            self.push_leaf(depth, rows.len());
            return;
        }
        let features = self.features;
        // A random feature that still varies among these rows; a leaf if none does.
        let first = self.rng.gen_range(0..features);
        let mut split = None;
        for offset in 0..features {
            let feature = (first + offset) % features;
            let column = &self.columns[feature * self.rows..(feature + 1) * self.rows];
            let (low, high) = range_of(column, rows);
            if low < high {
                split = Some((feature, low, high));
                break;
            }
        }
        let Some((feature, low, high)) = split else {
            self.push_leaf(depth, rows.len());
            return;
        };
        let threshold = self.rng.gen_range(low..high);
        let column = &self.columns[feature * self.rows..(feature + 1) * self.rows];
        // Branch-free partition into `spare` (which side a row goes is a coin toss for
        // the branch predictor): each row is written both after the left rows so far and
        // before the right ones (from the end), and kept on its side; a slot's last write
        // is its own row's. Only which rows go left matters, not their order: the tree
        // below is the same for any order of its rows. The children then partition back
        // into `rows`, so nothing is copied.
        let n = rows.len();
        let (mut left, mut right) = (0, 0);
        for &row in rows.iter() {
            let goes_left = column[row] < threshold;
            spare[left] = row;
            spare[n - 1 - right] = row;
            left += usize::from(goes_left);
            right += usize::from(!goes_left);
        }
        let boundary = left;
        let index = self.nodes.len();
        self.push(
            Node {
                feature: feature as u32,
                right: 0,
                value: threshold,
            },
            low,
            high,
            depth,
        );
        let (left, right) = spare.split_at_mut(boundary);
        let (left_spare, right_spare) = rows.split_at_mut(boundary);
        self.grow(left, left_spare, depth + 1);
        self.nodes[index].right = self.nodes.len() as u32;
        self.grow(right, right_spare, depth + 1);
    }
}

impl IsolationForestValidParams {
    pub fn trees(&self) -> usize {
        self.trees
    }

    pub fn subsample(&self) -> usize {
        self.subsample
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Fits on the rows of `records` (the same as `fit` on a dataset of them).
    pub fn fit_records(
        &self,
        records: ArrayView2<'_, f64>,
    ) -> Result<IsolationForest, IsolationForestFitError> {
        self.fit_laid_out(records, true)
    }

    /// [`fit_records`](Self::fit_records), with the complete layout when `complete` and
    /// it applies, else with the preorder links only.
    fn fit_laid_out(
        &self,
        records: ArrayView2<'_, f64>,
        complete: bool,
    ) -> Result<IsolationForest, IsolationForestFitError> {
        let (rows, features) = records.dim();
        if rows < 2 || features == 0 {
            return Err(IsolationForestFitError::NotEnoughData { rows, features });
        }
        if !records.iter().all(|v| v.is_finite()) {
            let ((row, feature), _) = records
                .indexed_iter()
                .find(|(_, v)| !v.is_finite())
                .unwrap_or(((0, 0), &0.0));
            return Err(IsolationForestFitError::NonFinite { row, feature });
        }
        let subsample = self.subsample.min(rows);
        let max_depth = self
            .max_depth
            .unwrap_or_else(|| (subsample as f64).log2().ceil() as usize)
            .max(1);
        let mut columns = Vec::with_capacity(rows * features);
        for column in records.columns() {
            columns.extend(column.iter().copied());
        }
        let mut builder = Builder {
            columns,
            rows,
            features,
            rng: Xoshiro256PlusPlus::seed_from_u64(self.seed),
            nodes: Vec::with_capacity(self.trees * subsample),
            bounds: self
                .isolate_out_of_range
                .then(|| Vec::with_capacity(self.trees * subsample)),
            max_depth,
            deepest: 0,
            path_lengths: vec![f64::NAN; subsample + 1],
        };
        let mut all_rows: Vec<usize> = (0..rows).collect();
        let mut roots = Vec::with_capacity(self.trees);
        let mut sample = Vec::with_capacity(subsample);
        let mut spare = vec![0; subsample];
        for _ in 0..self.trees {
            // Partial Fisher-Yates: the first `subsample` entries become the sample.
            for i in 0..subsample {
                let j = builder.rng.gen_range(i..rows);
                all_rows.swap(i, j);
            }
            sample.clear();
            sample.extend_from_slice(&all_rows[..subsample]);
            roots.push(builder.nodes.len() as u32);
            builder.grow(&mut sample, &mut spare, 0);
        }
        let mut bounds = builder.bounds.unwrap_or_default();
        bounds.shrink_to_fit();
        let mut nodes = builder.nodes;
        let complete = if complete && bounds.is_empty() {
            CompleteTrees::build(&nodes, &roots, features, builder.deepest, subsample)
        } else {
            None
        };
        if complete.is_some() {
            nodes = Vec::new();
        }
        nodes.shrink_to_fit();
        Ok(IsolationForest {
            nodes,
            bounds,
            roots,
            complete,
            features,
            normaliser: average_path_length(subsample),
        })
    }
}

impl<D, T> Fit<ArrayBase<D, Ix2>, T, IsolationForestFitError> for IsolationForestValidParams
where
    D: Data<Elem = f64>,
    ArrayBase<D, Ix2>: Records,
{
    type Object = IsolationForest;

    fn fit(
        &self,
        dataset: &DatasetBase<ArrayBase<D, Ix2>, T>,
    ) -> Result<IsolationForest, IsolationForestFitError> {
        self.fit_records(dataset.records.view())
    }
}

impl IsolationForest {
    /// The number of features a row must have.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Scores one row in [0, 1]: about 0.5 and below for ordinary rows, near 1 for rows
    /// that isolate quickly. Missing features (a shorter row) count as 0; NaN goes right.
    pub fn score_row(&self, row: ArrayView1<'_, f64>) -> f64 {
        match row.as_slice() {
            Some(slice) => self.score_slice(slice),
            None => self.score_slice(&row.to_vec()),
        }
    }

    /// [`score_row`](Self::score_row) on a slice.
    pub fn score_slice(&self, row: &[f64]) -> f64 {
        let total = match &self.complete {
            Some(trees) if row.len() >= self.features => trees.total_path(row),
            Some(trees) => {
                let mut padded = row.to_vec();
                padded.resize(self.features, 0.0);
                trees.total_path(&padded)
            }
            None => self.total_path_by_links(row),
        };
        if self.normaliser <= 0.0 {
            return 0.5;
        }
        let mean_path = total / self.roots.len() as f64;
        (-mean_path / self.normaliser).exp2().clamp(0.0, 1.0)
    }

    /// The summed path lengths, following each tree's preorder links.
    fn total_path_by_links(&self, row: &[f64]) -> f64 {
        let mut total = 0.0;
        for &root in &self.roots {
            let mut index = root as usize;
            loop {
                let node = self.nodes[index];
                if node.feature == LEAF {
                    total += node.value;
                    break;
                }
                let x = row.get(node.feature as usize).copied().unwrap_or(0.0);
                if let Some(bounds) = self.bounds.get(index) {
                    if x < bounds.low || x > bounds.high {
                        total += bounds.depth;
                        break;
                    }
                }
                index = if x < node.value {
                    index + 1
                } else {
                    node.right as usize
                };
            }
        }
        total
    }

    /// Scores every row.
    pub fn score(&self, records: ArrayView2<'_, f64>) -> ndarray::Array1<f64> {
        records
            .rows()
            .into_iter()
            .map(|row| self.score_row(row))
            .collect()
    }

    /// Bytes held by the fitted trees.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.bounds.capacity() * std::mem::size_of::<Bounds>()
            + self.roots.capacity() * 4
            + self.complete.as_ref().map_or(0, CompleteTrees::heap_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::{average_path_length, IsolationForestFitError, IsolationForestParams};
    use linfa::prelude::*;
    use linfa::Dataset;
    use ndarray::{array, Array2};
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest, ProptestConfig};
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn planted(rows: usize, outliers: usize, seed: u64) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut data = Array2::zeros((rows + outliers, 3));
        for i in 0..rows {
            for j in 0..3 {
                data[[i, j]] = rng.gen_range(-1.0..1.0);
            }
        }
        for i in rows..rows + outliers {
            for j in 0..3 {
                data[[i, j]] = if j == i % 3 { 8.0 + i as f64 } else { 0.0 };
            }
        }
        data
    }

    #[test]
    fn checks_parameters() {
        assert!(IsolationForestParams::new().trees(0).check().is_err());
        assert!(IsolationForestParams::new().subsample(1).check().is_err());
        assert!(IsolationForestParams::new().max_depth(0).check().is_err());
        assert!(IsolationForestParams::new().check().is_ok());
    }

    #[test]
    fn c_of_n_matches_the_paper() {
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        assert!((average_path_length(256) - 10.244_770_920_658_37).abs() < 1e-9);
    }

    /// The same forest fitted with the complete layout and with the links only.
    fn both_layouts(
        data: &Array2<f64>,
        trees: usize,
        depth: usize,
    ) -> (super::IsolationForest, super::IsolationForest) {
        let params = IsolationForestParams::new()
            .trees(trees)
            .subsample(64)
            .max_depth(depth)
            .seed(9)
            .isolate_out_of_range(false)
            .check()
            .unwrap();
        let complete = params.fit_laid_out(data.view(), true).unwrap();
        let links = params.fit_laid_out(data.view(), false).unwrap();
        assert!(complete.complete.is_some() && links.complete.is_none());
        (complete, links)
    }

    #[test]
    fn complete_layout_scores_like_the_links_bit_for_bit() {
        let data = planted(300, 6, 11);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        for (depth, trees) in [(1, 3), (4, 24), (6, 24), (8, 13)] {
            let (complete, links) = both_layouts(&data, trees, depth);
            for i in 0..500 {
                let mut row: Vec<f64> = (0..3).map(|_| rng.gen_range(-6.0..6.0)).collect();
                match i % 5 {
                    0 => row[i % 3] = f64::NAN,
                    1 => row.truncate(i % 3), // missing features count as 0
                    2 => row.copy_from_slice(&data.row(i % 300).to_vec()),
                    _ => {}
                }
                let (a, b) = (complete.score_slice(&row), links.score_slice(&row));
                assert_eq!(a.to_bits(), b.to_bits(), "depth {depth}, row {row:?}");
            }
        }
    }

    #[test]
    fn complete_layout_scores_wide_rows_like_the_links() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
        let data = Array2::from_shape_fn((200, 12), |_| rng.gen_range(-1.0..1.0));
        let (complete, links) = both_layouts(&data, 10, 6);
        for i in 0..200 {
            let row: Vec<f64> = (0..12).map(|_| rng.gen_range(-2.0..2.0)).collect();
            let row = &row[..if i % 4 == 0 { 7 } else { 12 }];
            let (a, b) = (complete.score_slice(row), links.score_slice(row));
            assert_eq!(a.to_bits(), b.to_bits(), "{row:?}");
        }
    }

    #[test]
    fn planted_outliers_rank_on_top() {
        let data = planted(500, 5, 7);
        let dataset = Dataset::from(data.clone());
        let forest = IsolationForestParams::new().seed(3).fit(&dataset).unwrap();
        let scores = forest.score(data.view());
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let mut top: Vec<usize> = order[..5].to_vec();
        top.sort_unstable();
        assert_eq!(top, [500, 501, 502, 503, 504]);
    }

    #[test]
    fn rejects_non_finite_training_rows() {
        let data = array![[1.0, 2.0], [f64::NAN, 1.0]];
        assert!(matches!(
            IsolationForestParams::new()
                .check()
                .unwrap()
                .fit_records(data.view()),
            Err(IsolationForestFitError::NonFinite { row: 1, feature: 0 })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn scores_are_finite_in_unit_interval_and_seeded(
            values in proptest::collection::vec(-1e9f64..1e9, 8..200),
            probe in proptest::collection::vec(-1e12f64..1e12, 2),
            seed in 0u64..1000,
        ) {
            let rows = values.len() / 2;
            let data = Array2::from_shape_vec((rows, 2), values[..rows * 2].to_vec()).unwrap();
            let params = IsolationForestParams::new().trees(20).subsample(64).seed(seed);
            let first = params.clone().check().unwrap().fit_records(data.view()).unwrap();
            let second = params.check().unwrap().fit_records(data.view()).unwrap();
            prop_assert_eq!(&first, &second);
            for row in data.rows().into_iter().chain(std::iter::once(ndarray::aview1(&probe))) {
                let s = first.score_row(row);
                prop_assert!(s.is_finite() && (0.0..=1.0).contains(&s));
            }
        }

        #[test]
        fn a_far_outlier_scores_above_every_training_row(
            values in proptest::collection::vec(-100.0f64..100.0, 64..256),
            seed in 0u64..1000,
        ) {
            let rows = values.len() / 2;
            let data = Array2::from_shape_vec((rows, 2), values[..rows * 2].to_vec()).unwrap();
            let forest = IsolationForestParams::new().trees(50).seed(seed)
                .check().unwrap().fit_records(data.view()).unwrap();
            let outlier = forest.score_slice(&[1e6, -1e6]);
            for row in data.rows() {
                prop_assert!(outlier > forest.score_row(row));
            }
        }
    }
}
