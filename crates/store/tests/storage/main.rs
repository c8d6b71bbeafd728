//! The storage suite, run against both backends: every test exists twice, as `sqlite::NAME` (a
//! file in a temporary directory) and `postgres::NAME` (a fresh database on this test process's
//! throwaway cluster, see `portcullis_testkit::pg`). A test is an `async fn(&Db)` in one of the
//! modules below, listed once in [`storage_suite!`].
//!
//! Raw SQL (to count rows, or to tamper with the audit trail as someone with database access
//! would) goes through a separate sqlx connection; both backends take `$n` placeholders.

// Helpers outside `#[test]` functions count as library code to clippy; here they are test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod checkpoints;
mod concurrency;
mod envs;
mod keys;
mod log;
mod orgs;
mod outbox;
mod support;
mod transactions;

/// One test on one backend.
macro_rules! storage_test {
    ($open:ident, $(#[$attr:meta])* $module:ident :: $test:ident) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            crate::$module::$test(&crate::support::Db::$open().await).await;
        }
    };
}

/// Tests for both backends, then tests of what only PostgreSQL promises (several nodes on one
/// database). A test may carry attributes (`#[ignore = "…"]`), given to every variant.
macro_rules! storage_suite {
    (
        both: [$($(#[$attr:meta])* $module:ident :: $test:ident),+ $(,)?],
        postgres_only: [$($(#[$pg_attr:meta])* $pg_module:ident :: $pg_test:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            $(storage_test!(sqlite, $(#[$attr])* $module::$test);)+
        }
        mod postgres {
            $(storage_test!(postgres, $(#[$attr])* $module::$test);)+
            $(storage_test!(postgres, $(#[$pg_attr])* $pg_module::$pg_test);)*
        }
    };
}

storage_suite! {
    both: [
        envs::migrations_apply_once_and_are_idempotent,
        envs::environment_create_writes_keys_event_and_audit,
        envs::duplicate_environment_is_refused_and_writes_nothing,
        envs::environment_update_records_previous_attributes,
        orgs::organization_create_claims_domains,
        transactions::writes_in_one_transaction_commit_together_or_not_at_all,
        orgs::domain_taken_in_the_environment_is_refused_and_writes_nothing,
        orgs::same_domain_is_free_in_another_environment,
        orgs::organization_update_replaces_domains_and_records_previous,
        orgs::organization_delete_releases_domains,
        log::events_are_numbered_per_environment_without_gaps,
        log::events_page_with_after_limit_and_has_more,
        log::audit_chain_names_the_tampered_record,
        checkpoints::audit_checkpoints_are_kept_once_per_number,
        keys::api_key_lifecycle,
        keys::signing_key_rotation_keeps_one_active_and_one_next,
        keys::master_key_reseal_is_all_or_nothing,
        concurrency::concurrent_creates_number_events_without_gaps,
        concurrency::concurrent_claims_of_one_domain_admit_exactly_one,
        concurrency::concurrent_rotations_keep_one_active_and_one_next,
        concurrency::concurrent_revocations_record_one_revocation,
        outbox::a_batch_applies_each_outcome_only_under_its_lease,
        outbox::a_commit_wakes_the_watchers_and_a_rollback_does_not,
        outbox::a_released_lease_makes_its_delivery_due_again_at_once,
    ],
    postgres_only: [
        // SQLite is one process's database: sqlx takes no migration lock there.
        concurrency::concurrent_migrations_apply_each_once,
    ],
}
