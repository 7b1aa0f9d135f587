"""Every error clew raises, in one tree.

::

    ClewError
    ├── ConfigError (ValueError)            bad URL, bad option
    │   └── MissingExtraError (ImportError)  an optional extra is not installed
    ├── CodecError
    │   ├── UnknownTypeError (TypeError)     a value clew cannot encode; names the field path
    │   ├── EncodeError (ValueError)         a value clew refuses to write: nested too deep, containing
    │   │                                    itself, text that is not UTF-8, a class defined in a function
    │   ├── DecodeError (ValueError)         bytes that are not a valid clew blob
    │   ├── PickleRefusedError               a pickled blob read without the pickle opt-in
    │   └── CryptoError                      encryption at rest; names the key id, never the key
    │       ├── MissingKeyError (LookupError)  a key id the keyring does not hold
    │       └── DecryptError                 a wrong key under that id, or changed ciphertext
    ├── IntegrityError                       stored bytes do not match their hash
    ├── StoreError
    │   ├── StoreUnavailableError (ConnectionError)  server down, file unopenable
    │   │   └── CommitUnknownError           the connection died during COMMIT: outcome unknown
    │   ├── NotFoundError (LookupError)      unknown run, branch or checkpoint
    │   ├── ConflictError                    a branch head moved under a writer
    │   │   └── LeaseLostError (+LeaseError) a worker's lease was taken over: it must stop
    │   ├── LeaseError                       lease held by another owner
    │   │   └── RunLockedError               a branch is being executed elsewhere
    │   └── SchemaVersionError               the database schema is newer than this clew
    └── RunError
        ├── StepNotFoundError (LookupError)  a step name that the agent does not define
        ├── InvalidStateError (ValueError)   an update or state that fails validation
        ├── RunStatusError                   an action not allowed in the run's status
        ├── StepFailedError                  a step ran out of retries
        ├── UnknownOutcomeError              a tool call whose outcome was lost in a crash
        ├── CodeVersionError                 resuming under a different code version
        └── NoUpcasterError (LookupError)    a stored schema version with no way to the current one

Messages name the object at fault (run, checkpoint, field path) and, where there is
one, the fix.
"""

from __future__ import annotations

__all__ = [
    "ClewError",
    "CodeVersionError",
    "CodecError",
    "CommitUnknownError",
    "ConfigError",
    "ConflictError",
    "CryptoError",
    "DecodeError",
    "DecryptError",
    "EncodeError",
    "IntegrityError",
    "InvalidStateError",
    "LeaseError",
    "LeaseLostError",
    "MissingExtraError",
    "MissingKeyError",
    "NoUpcasterError",
    "NotFoundError",
    "PickleRefusedError",
    "RunError",
    "RunLockedError",
    "RunStatusError",
    "SchemaVersionError",
    "StepFailedError",
    "StepNotFoundError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownOutcomeError",
    "UnknownTypeError",
]


class ClewError(Exception):
    """Root of every error raised by clew."""


class ConfigError(ClewError, ValueError):
    """A bad store URL or option."""


class MissingExtraError(ConfigError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class CodecError(ClewError):
    """A value could not be encoded or bytes could not be decoded."""


class UnknownTypeError(CodecError, TypeError):
    """A value of a type the codec does not know.

    Attributes:
        path: where the value sits, e.g. ``state.tool_results['kb'].raw``.
        type_name: the qualified name of the offending type.
    """

    def __init__(self, path: str, type_name: str) -> None:
        self.path = path
        self.type_name = type_name
        super().__init__(
            f"cannot encode {path}: type {type_name} is not known to clew; "
            "register it with clew.codec.register_type(...), make it a dataclass or "
            "Pydantic model, or mark the field ephemeral"
        )


class EncodeError(CodecError, ValueError):
    """A value clew refuses to write, because it could not be read back whole.

    Attributes:
        path: where the value sits, e.g. ``state.messages[3]['content']``.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        shown = path if len(path) <= 120 else path[:100] + "..." + path[-17:]
        super().__init__(f"cannot encode {shown}: {problem}")


class DecodeError(CodecError, ValueError):
    """Bytes that are not a valid clew blob."""


class PickleRefusedError(DecodeError):
    """A pickled blob was read by a codec without the pickle opt-in."""


class CryptoError(CodecError):
    """Encrypted data cannot be read or written.

    Attributes:
        key_id: the id of the key at fault (never the key itself).
    """

    def __init__(self, message: str, *, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(message)


class MissingKeyError(CryptoError, LookupError):
    """Data was encrypted with a key the keyring does not hold."""


class DecryptError(CryptoError):
    """A blob does not decrypt under the key its header names: a wrong key, or changed bytes."""


class IntegrityError(ClewError):
    """Stored bytes do not match the hash that names or seals them."""


class StoreError(ClewError):
    """A storage backend failed."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The database cannot be reached or opened."""


class CommitUnknownError(StoreUnavailableError):
    """The connection died while a transaction was committing: it may or may not have committed.

    :meth:`clew.Store.commit` settles this itself when it can (it reconnects and
    re-reads the branch head); the error reaches the caller only when the server
    stays out of reach. Find out by re-reading the head (``store.get_branch(run_id,
    branch).head``) once the server is back.
    """


class NotFoundError(StoreError, LookupError):
    """An unknown run, branch or checkpoint."""


class ConflictError(StoreError):
    """A branch head moved between read and commit (a concurrent writer won)."""


class LeaseError(StoreError):
    """A lease is held by another owner."""


class RunLockedError(LeaseError):
    """A run is being executed by another worker (its lease has not expired)."""


class LeaseLostError(ConflictError, LeaseError):
    """A worker's lease on a branch was taken over (its epoch moved on).

    The write that raised it did not happen, and the worker must stop: another worker
    now owns the branch. Raised before a tool call's intent is written, so a worker
    that stalled past its lease never runs the call.
    """


class SchemaVersionError(StoreError):
    """The database was migrated by a newer clew than this one."""


class RunError(ClewError):
    """A run cannot proceed."""


class StepNotFoundError(RunError, LookupError):
    """A step name that the agent does not define."""


class InvalidStateError(RunError, ValueError):
    """A state or an update that fails validation against the agent's state type."""


class RunStatusError(RunError):
    """An action that the run's current status does not allow."""


class StepFailedError(RunError):
    """A step failed after its last retry; the run is marked failed."""


class UnknownOutcomeError(RunError):
    """A non-idempotent tool call was interrupted between intent and outcome."""


class CodeVersionError(RunError):
    """A run checkpointed by one code version is resumed by another."""


class NoUpcasterError(RunError, LookupError):
    """A checkpoint's state schema version cannot be brought to the agent's current one.

    Attributes:
        state_type: the state type (``module:qualname``).
        stored: the schema version the checkpoint was written with.
        current: the agent's schema version.
        missing: the first version with no upcaster registered from it (None when the
            stored version is newer than the current one: there is no way down).
    """

    def __init__(self, message: str, *, state_type: str, stored: int, current: int, missing: int | None) -> None:
        self.state_type = state_type
        self.stored = stored
        self.current = current
        self.missing = missing
        super().__init__(message)
