"""One exception family for everything a user should see as a message (``app.py`` turns it into ``gr.Error``)."""

from __future__ import annotations


class RagError(Exception):
    """Base of all user-facing errors. ``str(err)`` is a one-line message fit to show a user."""


class ConfigError(RagError):
    """A setting has a bad value (the message names the setting and the value)."""


class IngestError(RagError):
    """A file could not be ingested; the knowledge base is unchanged."""


class UnsupportedFile(IngestError):
    """Wrong extension, empty file, or content that doesn't match the extension."""


class EncryptedPdf(IngestError):
    """The PDF needs a password."""


class DamagedFile(IngestError):
    """The parser could not read the file."""


class NoText(IngestError):
    """The document has no text layer (or no speech) to index."""


class TooLarge(IngestError):
    """The file exceeds a configured size or duration limit."""


class RebuildNeeded(RagError):
    """The stored knowledge base is inconsistent or was built by another embedder/format; rebuild it."""


class ModelError(RagError):
    """A bundled or configured model is missing or damaged."""


class Busy(RagError):
    """The server is at capacity; try again shortly."""
