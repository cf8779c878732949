//! ImageLocality: prefers nodes that already have the pod's images, by
//! their size, scaled by how widely each image is spread (so an image on
//! every node does not pull pods anywhere in particular).

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::Snapshot;
use crate::extension_points;
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status};
use crate::nodeinfo::{NodeInfo, PodInfo, normalized_image_name};

pub const NAME: &str = "ImageLocality";
const PRE_SCORE_KEY: &str = "PreScoreImageLocality";
const MB: i64 = 1024 * 1024;
/// Below this the score is 0.
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container: above this the score is 100.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Scores nodes by the images they have.
pub struct ImageLocality;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
    extension_points!(as_pre_score: PreScorePlugin, as_score: ScorePlugin);
}

#[derive(Clone)]
struct PreScoreState {
    total_nodes: usize,
    image_nodes: Arc<HashMap<String, usize>>,
    images: Arc<Vec<String>>,
}

/// upstream's `calculatePriority`.
pub fn priority(sum: i64, containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * containers.max(1) as i64;
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let images: Vec<String> = pod
            .pod
            .spec
            .iter()
            .flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(s.containers.iter())
            })
            .filter_map(|c| c.image.as_deref())
            .map(normalized_image_name)
            .collect();
        // No node has any of the images: every node would score 0.
        if !images.iter().any(|i| snapshot.image_nodes.contains_key(i)) {
            return Status::skip();
        }
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                total_nodes: snapshot.len(),
                image_nodes: snapshot.image_nodes.clone(),
                images: Arc::new(images),
            },
        );
        Status::success()
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Ok(0);
        };
        let total = s.total_nodes.max(1) as f64;
        let sum: i64 = s
            .images
            .iter()
            .filter_map(|image| {
                let size = node.images.get(image)?;
                let spread = *s.image_nodes.get(image).unwrap_or(&1) as f64 / total;
                Some((*size as f64 * spread) as i64)
            })
            .sum();
        Ok(priority(sum, s.images.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod};
    use serde_json::json;

    #[test]
    fn nodes_with_big_widely_spread_images_score_higher() {
        let with = |size: i64| {
            node_info(
                json!({"status": {"images": [{"names": ["app:1"], "sizeBytes": size}]}}),
                vec![],
            )
        };
        let big = with(500 * MB);
        let none = node_info(json!({}), vec![]);
        let snapshot = Snapshot::from_nodes(vec![big.clone(), none.clone()]);
        let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "app:1"}]}}));
        let mut state = CycleState::default();
        ImageLocality.pre_score(&mut state, &p, &[], &snapshot);
        // 500 MB on 1 of 2 nodes → 250 MB: (250-23)/(1000-23) × 100 = 23.
        assert_eq!(ImageLocality.score(&state, &p, &big).unwrap(), 23);
        assert_eq!(ImageLocality.score(&state, &p, &none).unwrap(), 0);
        assert_eq!(priority(0, 1), 0);
        assert_eq!(priority(5000 * MB, 1), 100);
    }
}
