//! The checked-in generated code must be exactly what flatc makes of `schema/strata.fbs`: this
//! regenerates it with the `flatc` crate's compiler (built from source, the version whose output
//! compiles with the `flatbuffers` crate) and compares byte for byte.
//! Fix a failure with `scripts/gen-protocol.sh`.

use std::path::Path;
use std::process::Command;

const SCHEMA: &str = "schema/strata.fbs";
const GENERATED: &str = "src/protocol/strata_generated.rs";

#[test]
fn generated_code_matches_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(flatc::flatc())
        .args(["--rust", "-o"])
        .arg(out.path())
        .arg(root.join(SCHEMA))
        .status()
        .expect("running flatc");
    assert!(status.success(), "flatc failed on {SCHEMA}");
    let fresh = std::fs::read_to_string(out.path().join("strata_generated.rs")).unwrap();
    let checked_in = std::fs::read_to_string(root.join(GENERATED)).unwrap();
    assert!(
        fresh == checked_in,
        "{GENERATED} has drifted from {SCHEMA}: run scripts/gen-protocol.sh and commit the result"
    );
}
