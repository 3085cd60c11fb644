//! Compiles `proto/flightstore.proto` with a vendored `protoc` (no system install needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../proto/flightstore.proto";
    println!("cargo:rerun-if-changed={proto}");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Every message but the two scalar-like ones (hand-written in lib.rs) reads its JSON
    // form with serde: missing fields take their defaults, unknown fields are errors.
    for message in [
        "ReadRequest",
        "WriteRequest",
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
    ] {
        config.type_attribute(
            format!(".flightstore.v1.{message}"),
            "#[derive(serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        );
    }
    config.type_attribute(".flightstore.v1.PutReceipt", "#[derive(serde::Serialize)]");
    // JSON objects in the JSON form, their JSON text in the binary form.
    for field in [
        "WriteRequest.metadata",
        "ListCriteria.metadata",
        "ListItemsRequest.metadata",
    ] {
        config.field_attribute(
            format!(".flightstore.v1.{field}"),
            "#[serde(deserialize_with = \"crate::json_object_text\")]",
        );
    }
    config.field_attribute(
        ".flightstore.v1.UpdateMetadataRequest.metadata",
        "#[serde(deserialize_with = \"crate::required_json_object_text\")]",
    );
    config.compile_protos(&[proto], &["../proto"])?;
    Ok(())
}
