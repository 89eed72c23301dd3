"""The catalog migrations: no drift from the models, reversible, expanding unless marked, safe to
start twice at once."""

from servicekit.testing.contracts import (
    test_a_migration_gives_up_on_a_lock_that_a_transaction_holds,
    test_a_migration_waits_for_the_advisory_lock,
    test_every_revision_expands_the_schema_unless_marked_as_a_contract_step,
    test_every_revision_upgrades_downgrades_and_upgrades_again,
    test_models_and_migrations_do_not_drift,
    test_the_migration_to_never_reuse_ids_keeps_every_row,
    test_two_processes_migrating_at_once_both_succeed,
)

__all__ = [
    "test_a_migration_gives_up_on_a_lock_that_a_transaction_holds",
    "test_a_migration_waits_for_the_advisory_lock",
    "test_every_revision_expands_the_schema_unless_marked_as_a_contract_step",
    "test_every_revision_upgrades_downgrades_and_upgrades_again",
    "test_models_and_migrations_do_not_drift",
    "test_the_migration_to_never_reuse_ids_keeps_every_row",
    "test_two_processes_migrating_at_once_both_succeed",
]
