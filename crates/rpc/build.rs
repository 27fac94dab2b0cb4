//! Compiles the workspace's .proto files with a pure-Rust protobuf compiler,
//! so a bare machine needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../../proto";
    let files = ["presence/v1/presence.proto", "registrar/v1/registrar.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={proto_root}/{file}");
    }
    let descriptors = protox::compile(files, [proto_root])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("descriptors.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_protos(&files, &[proto_root])?;
    Ok(())
}
