//! openraft's own storage test suite, run against the real RocksDB-backed log store
//! and state machine, each case on a fresh store in a temporary directory.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use shoal_raft::{LogStore, StateMachine, TypeConfig};
use shoal_storage::{Engine, EngineOptions};

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine =
            Engine::open(&dir.path().join("store"), &EngineOptions::default()).expect("open store");
        let syncer = shoal_raft::WalSyncer::start(engine.clone()).expect("syncer");
        let log = LogStore::new(engine.clone(), 1, syncer);
        let sm = StateMachine::open(engine, 1, &dir.path().join("snapshots"))
            .expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(RocksBuilder)
        .await
        .expect("openraft storage suite");
}
