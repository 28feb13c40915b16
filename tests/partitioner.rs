//! The producer's key partitioner against the mapping of a real Kafka client library
//! (`tests/data/kafka-murmur2-partitioner/cases.json`): every key, every partition count.

use base64::Engine;
use strata::client::{murmur2, partition_for_key};

#[test]
fn every_key_lands_where_a_kafka_client_puts_it() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/kafka-murmur2-partitioner/cases.json"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().expect("cases");
    assert!(
        cases.len() > 50,
        "the vector file has {} cases",
        cases.len()
    );
    let mut checked = 0;
    for case in cases {
        let key = base64::engine::general_purpose::STANDARD
            .decode(case["key_b64"].as_str().unwrap())
            .unwrap();
        let want_hash = case["murmur2"].as_i64().unwrap() as i32;
        assert_eq!(murmur2(&key), want_hash, "murmur2 of {key:?}");
        for (n, want) in case["partitions"].as_object().unwrap() {
            let n: u32 = n.parse().unwrap();
            let want = want.as_u64().unwrap() as u32;
            assert_eq!(
                partition_for_key(&key, n),
                want,
                "key {key:?} over {n} partitions"
            );
            checked += 1;
        }
    }
    println!("{checked} (key, partition count) cases match");
}
