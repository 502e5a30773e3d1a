//! Generates the bus contracts from proto/ with prost, using protox so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("feishu_bridge/v1/feishu_event.proto"),
        root.join("feishu_bridge/v1/org_change.proto"),
        root.join("feishu_bridge/v1/auth_event.proto"),
        root.join("lark/ws/pbbp2.proto"),
        root.join("feishu_bridge/v1/notify.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let descriptors = protox::compile(&files, [&root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
