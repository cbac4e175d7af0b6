"""The dense side's encoder: all-MiniLM-L6-v2 (mean pooling, unit vectors) for items and queries.

Two backends, recorded in the index's manifest so a query is always embedded the way the
items were:

- ``onnx`` (default): the encoder exported once to ONNX with int8 weights (per output
  channel) and run by ONNX Runtime. On 2 cores it embeds catalog texts several times faster
  than PyTorch in bf16 (fused attention and layer norms, VNNI int8 products), and its vectors
  stay within cosine 0.99 of fp32. The exported file is cached by the encoder's fingerprint
  and copied into each index version, so a service loads only that file, not PyTorch weights.
- ``static``: the same checkpoint distilled once into a static table of token vectors
  (model2vec: each vocabulary token run through the encoder, PCA to 256 dimensions, rare
  tokens weighted up). A text's vector is the mean of its tokens' rows: tens of thousands of
  texts a second on one core instead of hundreds, at lower quality (the README has both
  figures). A build picks it when the transformer could not embed the catalog within its
  time budget (``search.index.build_index``).
- ``torch``: the checkpoint in PyTorch (bf16 autocast where the CPU has it), for encoders
  that do not export.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from training.hardware import cpu_has_native_bf16
from training.support.encoder import SentenceEncoder, fingerprint, resolve_encoder

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "static", "torch")
# Item text beyond this many tokens is not embedded.
EMBED_MAX_TOKENS = 64
# Changes whenever the export recipe changes, so old cached files are not reused.
ONNX_RECIPE = "int8-per-channel-v1"
ONNX_FILE = "encoder.onnx"
STATIC_RECIPE = "model2vec-pca256-v1"
STATIC_DIR = "encoder-static"
STATIC_DIMS = 256


class EncoderError(RuntimeError):
    """An encoder file that cannot be loaded or exported; the message names it."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "shopml" / "search-encoders"


class Encoder:
    """Embeds item texts in batches and one query at a time, with the same weights."""

    def __init__(
        self,
        spec: str = "minilm",
        backend: str = "onnx",
        threads: int | None = None,
        cache_dir: Path | None = None,
        onnx_file: Path | None = None,
        static_dir: Path | None = None,
    ):
        from training.support.config import DEFAULT_ENCODER

        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}; expected one of {BACKENDS}")
        self.spec = DEFAULT_ENCODER if spec == "minilm" else spec
        self.backend = backend
        self.threads = threads or torch.get_num_threads()
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        folder = resolve_encoder(self.spec)
        # Vectors are comparable only within one checkpoint and one backend.
        recipe = {"onnx": f"-{ONNX_RECIPE}", "static": f"-{STATIC_RECIPE}", "torch": ""}[backend]
        self.fingerprint = fingerprint(folder) + recipe
        self._onnx_file = Path(onnx_file) if onnx_file else None
        self._static_dir = Path(static_dir) if static_dir else None
        self._torch: SentenceEncoder | None = None
        self._static = None
        self._session = None
        self._tokenizer = None
        self._dim: int | None = None

    @classmethod
    def for_index(cls, manifest: dict, index_path: Path, threads: int = 1) -> Encoder:
        """The encoder an index version was built with (its own ONNX file where it has one)."""
        spec = manifest["encoder"]["spec"]
        backend = manifest["encoder"].get("backend", "torch")
        onnx_file = index_path / ONNX_FILE if backend == "onnx" else None
        static_dir = index_path / STATIC_DIR if backend == "static" else None
        encoder = cls(spec, backend, threads=threads, onnx_file=onnx_file, static_dir=static_dir)
        if encoder.fingerprint != manifest["encoder"]["fingerprint"]:
            log.warning(
                "search index %s was built with encoder %s; the installed one is %s: "
                "rebuild the index (queries may not match its vectors)",
                index_path,
                manifest["encoder"]["fingerprint"],
                encoder.fingerprint,
            )
        return encoder

    def with_backend(self, backend: str) -> Encoder:
        """The same checkpoint under another backend."""
        return Encoder(self.spec, backend, threads=self.threads, cache_dir=self.cache_dir)

    @property
    def dim(self) -> int:
        if self._dim is None and self.backend == "static":
            self._dim = int(self._static_model().dim)
        if self._dim is None:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(resolve_encoder(self.spec), local_files_only=True)
            self._dim = int(config.hidden_size)
        return self._dim

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(self.spec), local_files_only=True)
        return self._tokenizer

    def encode_items(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        if self.backend == "torch":
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_native_bf16()):
                return self._torch_model().encode(texts, batch_size=batch_size)
        if self.backend == "static":
            return self._static_encode(texts)
        return self._onnx_encode(texts, batch_size)

    def encode_query(self, text: str) -> np.ndarray:
        if self.backend == "torch":
            return self._torch_model().encode([text])[0]
        if self.backend == "static":
            return self._static_encode([text])[0]
        return self._onnx_encode([text], 1)[0]

    def onnx_path(self) -> Path:
        """The int8 ONNX file: the index's own copy, else the cache, exported there on first use."""
        if self._onnx_file is not None and self._onnx_file.exists():
            return self._onnx_file
        cached = self.cache_dir / f"{self.fingerprint}.onnx"
        if not cached.exists():
            export_onnx(self._torch_model(), cached)
        return cached

    def static_path(self) -> Path:
        """The distilled static model: the index's own copy, else the cache, distilled there on first use."""
        if self._static_dir is not None and self._static_dir.exists():
            return self._static_dir
        cached = self.cache_dir / f"{self.fingerprint}"
        if not (cached / "config.json").exists():
            distill_static(self.spec, cached, self.threads)
        return cached

    def copy_files_to(self, folder: Path) -> None:
        """Put the encoder's own files beside an index version (hard links where the disk allows),
        so a service loads the index with exactly the encoder that built it."""
        if self.backend == "onnx":
            _link(self.onnx_path(), Path(folder) / ONNX_FILE)
        elif self.backend == "static":
            source, target = self.static_path(), Path(folder) / STATIC_DIR
            target.mkdir()
            for file in source.iterdir():
                _link(file, target / file.name)

    def _torch_model(self) -> SentenceEncoder:
        if self._torch is None:
            self._torch = SentenceEncoder.load(self.spec, max_length=EMBED_MAX_TOKENS)
        return self._torch

    def _static_model(self):
        if self._static is None:
            from model2vec import StaticModel

            path = self.static_path()
            try:
                self._static = StaticModel.from_pretrained(str(path))
            except Exception as e:  # safetensors, json and tokenizer errors alike
                raise EncoderError(f"cannot load the static search encoder {path}: {e}") from e
        return self._static

    def _static_encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._static_model().encode(texts, max_length=EMBED_MAX_TOKENS, use_multiprocessing=False)
        return np.asarray(vectors, dtype=np.float32)

    def _onnx_session(self):
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            path = self.onnx_path()
            try:
                self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime raises its own (InvalidProtobuf, Fail...)
                raise EncoderError(f"cannot load the search encoder {path}: {e}") from e
        return self._session

    def _onnx_encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        session = self._onnx_session()
        # Batches of similar length waste little on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                [texts[i] for i in order[start : start + batch_size]],
                padding=True,
                truncation=True,
                max_length=EMBED_MAX_TOKENS,
                return_tensors="np",
            )
            feeds = {"input_ids": batch["input_ids"].astype(np.int64)}
            feeds["attention_mask"] = batch["attention_mask"].astype(np.int64)
            parts.append(session.run(None, feeds)[0])
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(parts)
        return out


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def distill_static(spec: str, target: Path, threads: int) -> None:
    """Distil the encoder ``spec`` into a model2vec static model at ``target`` (about half a
    minute on 2 cores: one forward pass per vocabulary token)."""
    from model2vec.distill import distill

    torch.set_num_threads(threads)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = distill(model_name=str(resolve_encoder(spec)), pca_dims=STATIC_DIMS)
        model.save_pretrained(str(partial))
        if target.exists():  # another process distilled it meanwhile
            shutil.rmtree(partial)
        else:
            partial.replace(target)
    except (RuntimeError, ValueError, OSError) as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise EncoderError(f"cannot distil the search encoder into a static model ({e})") from e


def export_onnx(model: SentenceEncoder, target: Path) -> None:
    """Export ``model`` (pooling and normalisation included) to ONNX with int8 weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    # A unique name per writer: two processes exporting at once never read a half-written file.
    tag = hashlib.sha1(f"{os.getpid()}-{id(model)}".encode()).hexdigest()[:8]
    fp32, int8 = target.with_suffix(f".{tag}.fp32.onnx"), target.with_suffix(f".{tag}.int8.onnx")
    example = model.tokenizer(["an example item"], return_tensors="pt")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
            torch.onnx.export(
                model.eval(),
                (example["input_ids"], example["attention_mask"]),
                str(fp32),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "embedding": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(int8, target)
    except (RuntimeError, ValueError, OSError) as e:
        raise EncoderError(f"cannot export the search encoder to ONNX ({e}); use backend='torch'") from e
    finally:
        for path in (fp32, int8):
            path.unlink(missing_ok=True)
