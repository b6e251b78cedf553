//! Turning a record's bytes into the JSON an application reads, and judging records, without
//! knowing records: formats (`SIDECAR_VALUE_FORMAT`, `SIDECAR_KEY_FORMAT`), Protobuf
//! descriptors, schema registries and their framing, the filter language (CEL). The
//! configuration compiles these (so a mistake exits 64); `crate::prepare` applies them to records.

pub mod avro;
pub mod decode;
pub mod filter;
pub mod registry;

use std::sync::Arc;
use std::time::Duration;

use decode::Decoder;
use filter::Filter;

/// A route's rules (all off by default).
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// How values are decoded (`None`: raw).
    pub value: Option<Arc<Decoder>>,
    /// How keys are decoded (`None`: raw).
    pub key: Option<Arc<Decoder>>,
    /// Records for which this is false are not delivered.
    pub filter: Option<Arc<Filter>>,
    /// Records older than this are dead-lettered as `expired`.
    pub max_age: Option<Duration>,
}

impl Rules {
    /// Whether every rule is off (records go straight to delivery).
    pub fn is_empty(&self) -> bool {
        self.value.is_none() && self.key.is_none() && self.filter.is_none() && self.max_age.is_none()
    }
}
