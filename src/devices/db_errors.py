"""Which database errors mean "PostgreSQL cannot serve us right now; retry", shared by every
writer and background loop (readings, alarms, checkpoints, commands, sweeps, LISTEN, notifier).

What is retried is never dropped: the caller keeps it (in memory, as backpressure) and writes it
once the database serves again. What the database refuses for good (a constraint, bad input) is
not in here and is each caller's to handle. The classes, by what an operator sees:

- refused or lost connections, timeouts: `OSError` (refused, reset), `TimeoutError` (connect,
  pool acquire, command timeout), `asyncpg.InterfaceError` (a connection closed under us),
  class 08 (`PostgresConnectionError`, incl. `ConnectionDoesNotExistError`);
- operator intervention, class 57: `AdminShutdownError` (backend terminated, server stopping),
  `CrashShutdownError`, `CannotConnectNowError` (starting up, shutting down, recovering),
  `QueryCanceledError` (statement_timeout, pg_cancel_backend), idle session timeout;
- class 53, insufficient resources: `TooManyConnectionsError`, disk full, out of memory;
- class 55, object not in prerequisite state: "database ... is not currently accepting
  connections" (`ALTER DATABASE ... ALLOW_CONNECTIONS false`, maintenance), lock timeouts;
- a read-only database (a standby after failover, `default_transaction_read_only`):
  `ReadOnlySQLTransactionError`, and an idle-in-transaction timeout;
- class 40, transaction rollback: serialization failures and deadlocks, retried by definition;
- `InternalClientError` "cannot switch to state N; another operation is in progress": asyncpg's
  protocol state when the server ended a pooled connection between two uses (seen here with
  terminated backends; MagicStack/asyncpg#784). The socket closes next, and the pool replaces it.
"""

from __future__ import annotations

import asyncpg
from asyncpg import exceptions as pg

#: `except UNAVAILABLE:` catches exactly the errors worth retrying (see the module docstring).
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    pg.PostgresConnectionError,
    pg.OperatorInterventionError,
    pg.InsufficientResourcesError,
    pg.ObjectNotInPrerequisiteStateError,
    pg.ReadOnlySQLTransactionError,
    pg.IdleInTransactionSessionTimeoutError,
    pg.TransactionRollbackError,
    pg.InternalClientError,
)

