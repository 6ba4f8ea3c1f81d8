"""One exception family for errors meant for users; the CLI prints them as one line."""


class TinylmError(Exception):
    """Base class: something the user can fix (bad input, impossible setting)."""


class InputFileError(TinylmError):
    """An input file is missing, empty, a directory or unreadable."""


class InvalidUTF8Error(TinylmError):
    """Text input is not valid UTF-8; carries the byte offset of the first bad byte."""

    def __init__(self, path, offset: int, reason: str = ""):
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"{path}: invalid UTF-8 at byte offset {offset}" + (f" ({reason})" if reason else ""))

    def __reduce__(self):  # keeps the offset when raised inside a worker process
        return (type(self), (self.path, self.offset, self.reason))


class ConfigError(TinylmError):
    """A setting that cannot work (vocab too small, bad special tokens, bad model shape...)."""


class TokenizerFileError(TinylmError):
    """A vocab.json / merges.txt pair that is malformed, truncated or inconsistent."""


class UnknownTokenError(TinylmError):
    """A token id outside the vocabulary was given to decode."""


class SpecialTokenNotAllowedError(TinylmError):
    """Text contains a special token that the caller did not allow (untrusted input)."""


class OutputError(TinylmError):
    """An output path cannot be written (read-only folder, full disk...)."""


class CheckpointError(TinylmError):
    """A checkpoint is truncated, corrupt, from another config or from a newer format."""


class DataError(TinylmError):
    """A token file that does not fit the model (dtype, length, ids out of range)."""


class DistributedError(TinylmError):
    """Another process of a multi-process run died or lost contact; this one stopped."""


class TrainingDivergedError(TinylmError):
    """The loss became NaN or infinite."""


class CorpusError(TinylmError):
    """A corpus shard that cannot be read as its format says: a bad record (invalid JSON, missing
    field, non-string value), a truncated compressed stream, a Parquet file without the column, an
    unknown extension. The message names the file and the line (JSON Lines) or row (Parquet)."""


class MissingExtraError(TinylmError):
    """An optional package is not installed; the message names the extra that installs it."""
