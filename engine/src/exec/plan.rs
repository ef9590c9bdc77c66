use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::frame::Preprocess;
use crate::graph::{Graph, NodeGeometry, Op};

/// A compiled model: graph, preprocessing and per-node costs. Immutable and shareable.
#[derive(Debug)]
pub struct Plan {
    graph: Graph,
    preprocess: Preprocess,
    macs_per_pixel: Vec<u64>,
    geometry: Vec<NodeGeometry>,
    total_macs: u64,
    has_consumers: Vec<bool>,
}

impl Plan {
    /// Compiles a graph. The input must be a 3-channel image.
    pub fn new(mut graph: Graph, preprocess: Preprocess) -> Result<Arc<Self>> {
        let input = graph.input_shape();
        if input.c != 3 || !matches!(graph.nodes[0].op, Op::Input) {
            return Err(Error::InvalidModel {
                node: graph.input_name.clone(),
                op: "input".into(),
                reason: format!("the input must be a 3-channel image, got {input}"),
            });
        }
        graph.prepare();
        let macs_per_pixel = graph.nodes.iter().map(|n| n.macs_per_pixel(&graph)).collect();
        let geometry = graph.geometry();
        let total_macs = graph.total_macs();
        let mut has_consumers = vec![false; graph.nodes.len()];
        for &i in graph.nodes.iter().flat_map(|n| &n.inputs) {
            has_consumers[i] = true;
        }
        Ok(Arc::new(Self { graph, preprocess, macs_per_pixel, geometry, total_macs, has_consumers }))
    }

    /// Imports an ONNX file and compiles it.
    pub fn from_onnx(path: impl AsRef<Path>, preprocess: Preprocess) -> Result<Arc<Self>> {
        Self::new(crate::import::load_onnx(path)?, preprocess)
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }
    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }
    pub fn geometry(&self) -> &[NodeGeometry] {
        &self.geometry
    }
    /// MACs of one output pixel of node `i`.
    pub fn macs_per_pixel(&self, i: usize) -> u64 {
        self.macs_per_pixel[i]
    }
    /// Whether another node reads node `i`'s output.
    pub fn has_consumers(&self, i: usize) -> bool {
        self.has_consumers[i]
    }
    /// MACs of one full inference.
    pub fn total_macs(&self) -> u64 {
        self.total_macs
    }
}
