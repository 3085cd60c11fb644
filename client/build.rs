//! Compiles `proto/flightstore.proto` with a vendored `protoc` (no system install needed)
//! and gives the request messages their JSON form (DESIGN.md, "Wire contract").
//!
//! The serde attributes of each field follow from its descriptor, so a field added to the
//! proto gets the right JSON form with no edit here: absent optional fields and empty
//! repeated fields are left out of the JSON (tickets stay short and readable), and
//! `metadata` string fields are JSON objects in the JSON form but their JSON text in the
//! binary form.

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::FieldDescriptorProto;

/// The messages a client sends (commands, tickets, criteria, action bodies): read from and
/// written to their JSON form with serde. Missing fields take their defaults; unknown
/// fields are errors, so a typo is never silently ignored. (`Time` and `RowGroupTarget`
/// have hand-written serde in `src/codec.rs`; `PutReceipt` is only sent by the server.)
const REQUESTS: &[&str] = &[
    "ReadRequest",
    "Grid",
    "WriteRequest",
    "Validation",
    "ListCriteria",
    "Empty",
    "CollectionRequest",
    "ListItemsRequest",
    "ItemRequest",
    "DeleteRangeRequest",
    "UpdateMetadataRequest",
    "SnapshotRequest",
    "VacuumRequest",
    "MissingIntervalsRequest",
    "ChangesSinceRequest",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../proto/flightstore.proto";
    println!("cargo:rerun-if-changed={proto}");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let descriptors = config.load_fds(&[proto], &["../proto"])?;
    for file in &descriptors.file {
        for message in &file.message_type {
            if !REQUESTS.contains(&message.name()) {
                continue;
            }
            let path = format!(".{}.{}", file.package(), message.name());
            config.type_attribute(
                &path,
                "#[derive(serde::Serialize, serde::Deserialize)] \
                 #[serde(default, deny_unknown_fields)]",
            );
            for field in &message.field {
                if let Some(attribute) = serde_attribute(field) {
                    config.field_attribute(format!("{path}.{}", field.name()), attribute);
                }
            }
        }
    }
    config.type_attribute(".flightstore.v1.PutReceipt", "#[derive(serde::Serialize)]");
    config.field_attribute(
        ".flightstore.v1.PutReceipt.duplicate",
        "#[serde(skip_serializing_if = \"Option::is_none\")]",
    );
    config.compile_fds(descriptors)?;
    Ok(())
}

/// The serde attribute of a request field, if it needs one.
fn serde_attribute(field: &FieldDescriptorProto) -> Option<&'static str> {
    // prost makes proto3 `optional` scalars and every message field an `Option`.
    let optional = field.proto3_optional() || field.r#type() == Type::Message;
    let repeated = field.label() == Label::Repeated;
    let metadata = field.name() == "metadata" && field.r#type() == Type::String && !repeated;
    match (metadata, optional, repeated) {
        (true, true, _) => Some(
            "#[serde(with = \"crate::codec::optional_json_object_text\", \
             skip_serializing_if = \"Option::is_none\")]",
        ),
        // A required object: absent in JSON only when empty (which the server rejects).
        (true, false, _) => Some(
            "#[serde(with = \"crate::codec::json_object_text\", \
             skip_serializing_if = \"String::is_empty\")]",
        ),
        // A `Vec` or, for a proto map, a `HashMap`.
        (false, _, true) => Some("#[serde(skip_serializing_if = \"crate::codec::is_default\")]"),
        (false, true, false) => Some("#[serde(skip_serializing_if = \"Option::is_none\")]"),
        (false, false, false) => None,
    }
}
