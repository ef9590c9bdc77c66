//! ONNX import: protobuf parsing by `tract-onnx`, conversion into the engine's IR here.
//!
//! tract parses and decodes the protobuf and the initializers; this module walks the nodes in
//! their (topological) file order and builds a [`crate::graph::Graph`]. Every attribute of every supported
//! op is checked: an attribute or value we do not implement is an
//! [`crate::Error::UnsupportedAttribute`] naming the node, never a silently different result.
//! BatchNormalization is folded into the Conv before it, and pointwise activations are fused
//! into their producer where the producer has no other consumer (counted per IR node, over all
//! its names). Every node is checked against the engine's size limits as it is added
//! ([`crate::graph::check_node`]), before anything is allocated for it.

mod onnx;

pub use onnx::{load_onnx, load_onnx_bytes, load_onnx_with, ImportOptions};
