"""MeloTTS (VITS2 + BERT on torch): multi-speaker neural voices, speaker blends, audio inside a sentence.

The package, in the order a model is used: ``languages`` (what each language needs), ``files``
(where its model and BERT are, and what is missing), ``isolation`` (importing melo without its
import-time side effects), ``loading`` (the model on torch), ``decoding`` (latent and windowed
decoder), ``engine`` (``MeloEngine``, what the pool and the catalog use). Importing this package
imports no torch: listing voices reads config files only.
"""

from .engine import MeloEngine
from .files import download
from .languages import installed_versions

__all__ = ["MeloEngine", "download", "installed_versions"]
