//! The conformance suite every store driver must pass, in the manner of River's
//! `riverdrivertest.Exercise`: the engine trusts the [`Store`](crate::Store) contract, not a
//! particular database, so each driver proves the contract by running the same cases against
//! a real database of its kind.
//!
//! A driver crate invokes [`conformance_tests!`](crate::conformance_tests) once, in an
//! integration test, with an expression that opens a fresh, empty store. The macro generates
//! one `#[test]` per case (named `conformance::<group>::<case>`); each opens its own store,
//! so cases never see one another's data and can run in parallel:
//!
//! ```ignore
//! // crates/weft-store-sqlite/tests/conformance.rs
//! weft_store::conformance_tests!(async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = weft_store_sqlite::SqliteStore::open(dir.path(), Default::default()).unwrap();
//!     (store as weft_store::DynStore, dir) // the guard (here the temp dir) lives as long as the case
//! });
//! ```
//!
//! A driver with a known, reported bug can list the failing cases, with their group, as
//! `known_bugs = ["subflows::stale_start_child_is_ignored"]` after the factory. Those cases
//! still run and must still fail; one that starts passing fails the build, so the entry is
//! removed as soon as the bug is fixed.
//!
//! The cases drive the store directly, with no engine: they create runs, report attempt
//! results and fire timers, and check both the returned [`Effects`](crate::Effects) and what
//! the store reads back. Times are explicit (`fixture::T0` onwards), never the wall clock.

use crate::DynStore;
use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

pub mod cancel;
pub mod claims;
pub mod deferred;
pub mod dlq;
pub mod events;
mod fixture;
pub mod flows;
pub mod keys;
pub mod lifecycle;
pub mod limits;
pub mod manage;
pub mod members;
pub mod prepared;
pub mod queues;
pub mod retention;
pub mod retries;
pub mod runs;
pub mod schedules;
pub mod subflows;
pub mod sweep;
pub mod tasks;

/// A fresh store for one case, with whatever must outlive it (a temp dir, a schema guard).
pub struct Harness {
    /// The store under test.
    pub store: DynStore,
    guard: Box<dyn Any + Send>,
}

impl Harness {
    /// A harness over `store`; `guard` is dropped only after the case has finished.
    pub fn new(store: DynStore, guard: impl Any + Send) -> Self {
        Self {
            store,
            guard: Box::new(guard),
        }
    }
}

impl<G: Any + Send> From<(DynStore, G)> for Harness {
    fn from((store, guard): (DynStore, G)) -> Self {
        Self::new(store, guard)
    }
}

/// Runs one case on a fresh store from `factory`, on a current-thread runtime (what
/// `#[tokio::test]` uses, without asking the driver crate for tokio's macros).
///
/// `name` is `<group>::<case>`. If it is in `known_bugs` the case must fail: it passing means
/// the bug was fixed and the entry is stale, which is reported as a failure.
#[doc(hidden)]
pub fn run_case<F, C, Fut>(name: &str, known_bugs: &[&str], factory: F, case: C)
where
    F: Future<Output = Harness>,
    C: FnOnce(DynStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the test runtime");
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async {
            let harness = factory.await;
            case(harness.store.clone()).await;
            harness.store.close();
            drop(harness.guard);
        })
    }));
    match (outcome, known_bugs.contains(&name)) {
        (Ok(()), false) => {}
        (Err(panic), false) => resume_unwind(panic),
        (Err(_), true) => eprintln!("{name}: known driver bug, still failing as expected"),
        (Ok(()), true) => panic!(
            "{name} is listed in known_bugs but passes now: remove it from the driver's list"
        ),
    }
}

/// Checks that every `known_bugs` entry names a case of the suite (a typo would otherwise
/// leave a real failure unexplained).
#[doc(hidden)]
pub fn check_known_bugs(all: &[&str], known_bugs: &[&str]) {
    let unknown: Vec<&&str> = known_bugs.iter().filter(|b| !all.contains(b)).collect();
    assert!(
        unknown.is_empty(),
        "known_bugs names cases that do not exist: {unknown:?}"
    );
}

/// Generates the conformance suite for a driver: one test per case, each on a fresh store.
///
/// The argument is an expression (typically an `async` block) whose future yields a
/// [`Harness`] or a `(DynStore, guard)` pair. See [the module docs](crate::conformance).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::conformance_tests!($factory, known_bugs = []);
    };
    ($factory:expr, known_bugs = $known:tt $(,)?) => {
        $crate::__conformance_cases! {
            factory = $factory;
            known = $known;
            flows {
                put_creates_version_one,
                put_identical_returns_existing_version,
                put_changed_creates_next_version,
                put_reverted_spec_creates_new_version,
                get_latest_specific_and_missing,
                list_returns_latest_per_name,
            }
            runs {
                create_reports_roots_ready,
                create_schedules_root_delay,
                create_with_start_time_waits_for_it,
                idempotency_key_returns_existing_run,
                idempotency_key_is_scoped_to_flow,
                get_lists_tasks_in_flow_order,
                get_missing_is_none,
                list_filters_by_flow_and_state,
                list_pages_newest_first_with_cursor,
                list_limit_defaults_to_fifty,
            }
            tasks {
                success_readies_successor,
                one_bad_result_does_not_lose_the_batchs_effects,
                join_waits_for_every_need,
                last_success_finishes_run_once,
                stale_attempt_result_is_ignored,
                result_for_finished_task_is_ignored,
                branch_skips_path_not_taken,
                inputs_return_run_input_and_upstream_outputs,
                inputs_of_missing_run_is_not_found,
                recover_reports_ready_tasks_and_earliest_timer,
            }
            retries {
                retryable_failure_schedules_backoff,
                promote_due_readies_next_attempt,
                promote_due_reports_next_timer,
                late_result_for_previous_attempt_is_ignored,
                non_retryable_failure_kills_task_and_fails_run,
                last_attempt_failure_kills_task,
                run_fails_only_after_other_work_drains,
                delay_waits_until_due,
            }
            deferred {
                deferred_task_waits_with_its_reason,
                promote_due_readies_the_same_attempt_after_until,
                deferrals_leave_the_retry_budget_unchanged,
                success_after_deferral_clears_it,
                stale_deferral_is_ignored,
                cancelled_task_shows_no_deferral,
            }
            subflows {
                start_child_suspends_parent_and_readies_child,
                child_success_resumes_parent_with_outputs,
                child_failure_retries_parent_task,
                child_failure_kills_parent_task_without_retries,
                stale_start_child_is_ignored,
            }
            sweep {
                a_consistent_store_has_nothing_to_repair,
            }
            cancel {
                cancel_marks_unfinished_tasks_and_run,
                cancel_cascades_to_child_runs,
                cancel_twice_conflicts,
                cancel_missing_is_not_found,
                completions_after_cancel_are_ignored,
                timers_after_cancel_are_ignored,
                cancelling_child_fails_parent_task,
            }
            dlq {
                dead_task_listed_with_attempts,
                list_filters_by_flow_and_node,
                list_newest_first,
                list_filters_by_error_text_and_time,
                cursor_pages_through_every_dead_task_once,
                replay_readies_task_and_resumes_run,
                replayed_task_can_finish_run,
                replay_of_live_task_is_rejected,
                replay_on_cancelled_run_conflicts,
            }
            queues {
                empty_store_has_no_queues,
                put_list_round_trip,
                put_overwrites,
                rate_round_trip,
            }
            limits {
                put_replace_list_delete,
                key_slots_acquire_release_expire,
                rate_buckets_space_starts,
                limits_prune_drops_only_spent_rows,
            }
            keys {
                empty_store_has_no_keys,
                create_list_round_trip,
                create_duplicate_id_conflicts,
                revoke_marks_key_once,
                revoke_missing_is_not_found,
                schema_is_current,
            }
            lifecycle {
                close_makes_later_calls_fail,
            }
            claims {
                claim_takes_each_task_once_by_priority,
                claim_respects_queue_and_limit,
                heartbeat_extends_and_lists_held_tasks,
                release_hands_back_unstarted_claims_at_once,
                reap_hands_back_expired_leases_as_the_same_attempt,
                completed_claimed_task_readies_claimable_successor,
                retried_task_is_claimable_after_backoff,
                replayed_task_is_claimable,
                late_result_of_lost_worker_is_applied_once,
                leader_lease_goes_to_one_holder_at_a_time,
                leader_release_hands_over_at_once,
            }
            members {
                beat_then_list_round_trips,
                second_beat_updates_the_member,
                stale_member_is_not_listed,
                beat_keeps_pool_readiness_and_the_store_clock,
                store_facts_describe_the_database,
            }
            events {
                create_reports_the_new_run,
                success_reports_task_then_finished_run,
                failures_report_errors_retries_and_dead_tasks,
                branch_reports_skipped_nodes,
                cancel_reports_cancelled_tasks_then_run,
                start_child_reports_suspension_then_child,
                replay_reports_the_run_resumed,
            }
            manage {
                flow_versions_oldest_first,
                flow_delete_keeps_finished_runs,
                flow_delete_conflicts_while_run_live,
                flow_delete_conflicts_while_a_task_is_dead,
                run_list_filters_by_creation_time,
                discard_cancels_dead_task_of_failed_run,
            }
            schedules {
                put_get_list_round_trip,
                fire_due_creates_one_run_per_tick_and_advances,
                a_tick_never_creates_two_runs,
                paused_schedules_do_not_fire,
                misfire_skip_fires_only_the_latest_tick,
                misfire_catch_up_fires_at_most_n,
                trigger_starts_a_run_now,
                tick_of_a_missing_flow_reports_and_advances,
                delete_removes_the_schedule,
            }
            prepared {
                a_prepared_tick_is_held_until_the_fire_step_releases_it,
                a_released_delay_root_waits_from_the_tick,
                pause_reapply_and_delete_drop_the_prepared_run,
                a_late_prepared_tick_follows_the_misfire_policy,
                a_new_flow_version_replaces_the_prepared_run,
                a_cancelled_prepared_run_does_not_fire,
                deleting_the_flow_drops_the_prepared_run,
                release_due_starts_prepared_ticks_once,
            }
            retention {
                prune_removes_finished_runs_of_old_days,
                prune_keeps_live_runs,
                prune_frees_idempotency_keys,
                prune_repeats_harmlessly,
            }
        }
    };
}

/// The expansion of [`conformance_tests!`]; not part of the API.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    (
        factory = $factory:expr;
        known = $known:tt;
        $($group:ident { $($case:ident),* $(,)? })*
    ) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn known_bugs_name_real_cases() {
                $crate::conformance::check_known_bugs(
                    &[$($(concat!(stringify!($group), "::", stringify!($case)),)*)*],
                    &$known,
                );
            }

            $(
                mod $group {
                    #[allow(unused_imports)]
                    use super::*;
                    $(
                        #[test]
                        fn $case() {
                            $crate::conformance::run_case(
                                concat!(stringify!($group), "::", stringify!($case)),
                                &$known,
                                async {
                                    ::std::convert::Into::<$crate::conformance::Harness>::into(
                                        $factory.await,
                                    )
                                },
                                $crate::conformance::$group::$case,
                            );
                        }
                    )*
                }
            )*
        }
    };
}
