"""The support model artifact in the BentoML model store (safetensors and JSON, never pickle).

Layout of a ``support:<version>`` model folder:
    support.json                 config, encoder spec and fingerprint, document count, metrics
    index/embeddings.safetensors retriever embeddings of the documents, (D, C) float32
    index/documents.json         the documents (articles and answered questions)
    ranker/                      the fine-tuned cross-encoder (save_pretrained, safetensors)
    generator/                   generator.json (base spec and fingerprint) and the LoRA adapter
    router/                      the turn router (save_pretrained, safetensors) and router.json
                                 (labels, max_length, threshold); absent in models trained without one
    checksums.json               size and sha256 of every other file, verified before loading
The promoted version is named in ``<BENTOML_HOME>/promotions/support.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from data_contracts.settings import Settings, use_model_store
from training.artifact_files import ArtifactError, load_tensors, read_json, seal, verify
from training.model_store import read_promotion, write_promotion
from training.support.config import SupportConfig
from training.support.encoder import Document, Retriever, SentenceEncoder, fingerprint, resolve_encoder
from training.support.generator import Generator, load_base
from training.support.ranker import CrossEncoder
from training.support.router import LABELS, Router

MODEL_NAME = "support"
FORMAT_VERSION = 1
# ArtifactError (from training.artifact_files) is what every failed load raises.


@dataclass
class SupportModel:
    """Everything the reply pipeline needs, in memory."""

    config: SupportConfig
    retriever: Retriever
    ranker: CrossEncoder
    generator: Generator | None = None
    metrics: dict = field(default_factory=dict)
    tag: str | None = None
    # The trained adapter (peft model) to save with the generator, if any.
    adapter: object | None = None
    # The turn router; None: every turn takes the support path (models trained without one).
    router: Router | None = None


def _bentoml(settings: Settings | None):
    use_model_store(settings or Settings.from_env())
    import bentoml

    return bentoml


def save_support_model(
    model: SupportModel, settings: Settings | None = None, labels: dict | None = None
) -> str:
    """Write ``model`` as a new ``support`` version; returns its tag."""
    from safetensors.torch import save_file

    bentoml = _bentoml(settings)
    encoder_dir = resolve_encoder(model.config.encoder)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "encoder": {
            "spec": model.config.encoder,
            "fingerprint": fingerprint(encoder_dir),
            "dim": model.retriever.encoder.dim,
        },
        "documents": len(model.retriever.documents),
        "generator": model.generator is not None,
        "router": model.router is not None,
        "metrics": model.metrics,
        "created": time.time(),
    }
    with bentoml.models.create(
        MODEL_NAME,
        labels={"profile": model.config.profile, **(labels or {})},
        metadata={
            k: v for k, v in meta.items() if k in ("format_version", "documents", "generator", "router")
        },
    ) as bento_model:
        root = Path(bento_model.path)
        (root / "index").mkdir()
        save_file(
            {"embeddings": model.retriever.embeddings.contiguous()},
            str(root / "index" / "embeddings.safetensors"),
        )
        (root / "index" / "documents.json").write_text(
            json.dumps([asdict(d) for d in model.retriever.documents])
        )
        model.ranker.save(root / "ranker")
        if model.generator is not None:
            model.generator.save_adapter(root / "generator", model.adapter)
        if model.router is not None:
            save_router(model.router, root / "router")
        (root / "support.json").write_text(json.dumps(meta, indent=1, default=str))
        seal(root)
        tag = str(bento_model.tag)
    model.tag = tag
    return tag


def resolve_model(tag: str | None = None, settings: Settings | None = None) -> tuple[Path, str]:
    """Folder and full tag of a support version: ``tag``, else the promoted one, else the latest."""
    bentoml = _bentoml(settings)
    tag = tag or promoted_tag(settings) or f"{MODEL_NAME}:latest"
    try:
        found = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as exc:
        raise ArtifactError(
            f"no support model {tag!r} in the model store; run `shopml train support`"
        ) from exc
    return Path(found.path), str(found.tag)


def model_path(tag: str | None = None, settings: Settings | None = None) -> Path:
    return resolve_model(tag, settings)[0]


def load_support_model(
    tag: str | None = None,
    settings: Settings | None = None,
    with_generator: bool = True,
    path: Path | None = None,
) -> SupportModel:
    """Load a support version (default: the promoted one); fails loudly on a corrupt or mismatched one."""
    from safetensors import SafetensorError

    settings = settings or Settings.from_env()
    if path is None:
        path, tag = resolve_model(tag, settings)
    root = path
    verify(root)  # every file as saved, every tensor finite
    try:
        meta = json.loads((root / "support.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{root}/support.json is missing or corrupt ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise ArtifactError(f"{root}/support.json: artifact format {version} is not {FORMAT_VERSION}")
    config = _config(meta, root / "support.json")
    try:
        encoder_spec, encoder_fingerprint = meta["encoder"]["spec"], meta["encoder"]["fingerprint"]
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{root}/support.json has no encoder spec and fingerprint ({exc!r})") from exc
    if fingerprint(resolve_encoder(encoder_spec)) != encoder_fingerprint:
        raise ArtifactError(f"{root}: encoder {encoder_spec!r} differs from the one the index was built with")
    encoder = SentenceEncoder.load(encoder_spec)
    tensors_file, documents_file = (
        root / "index" / "embeddings.safetensors",
        root / "index" / "documents.json",
    )
    tensors = load_tensors(tensors_file)
    if "embeddings" not in tensors:
        raise ArtifactError(f"{tensors_file} has no 'embeddings' tensor")
    embeddings = tensors["embeddings"].numpy()
    try:
        documents = [Document(**d) for d in read_json(documents_file)]
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{documents_file}: not a list of documents ({exc})") from exc
    if len(documents) != meta["documents"]:
        raise ArtifactError(f"{root}: {len(documents)} documents, the artifact says {meta['documents']}")
    try:
        retriever = Retriever(encoder, documents, embeddings)
    except ValueError as exc:
        raise ArtifactError(f"{root}: {exc}") from exc
    try:
        ranker = CrossEncoder.load(root / "ranker", config.ranker_max_length)
    except (OSError, SafetensorError, ValueError) as exc:
        raise ArtifactError(f"{root}/ranker is missing or corrupt ({exc})") from exc
    generator = None
    if with_generator and meta.get("generator"):
        generator = load_generator(root / "generator", generator_cache(settings))
    router = load_router(root / "router") if meta.get("router") else None
    return SupportModel(
        config, retriever, ranker, generator, meta.get("metrics", {}), tag=tag or str(root), router=router
    )


def save_router(router: Router, folder: Path) -> None:
    """The router's encoder and head (safetensors), its tokenizer and router.json."""
    folder.mkdir(parents=True, exist_ok=True)
    router.model.save_pretrained(folder, safe_serialization=True)
    router.tokenizer.save_pretrained(folder)
    (folder / "router.json").write_text(
        json.dumps({"labels": list(LABELS), "max_length": router.max_length, "threshold": router.threshold})
    )


def load_router(folder: Path) -> Router:
    """The router saved by ``save_router``; its labels must be the ones this code routes by."""
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec_file = folder / "router.json"
    try:
        spec = json.loads(spec_file.read_text())
        labels, max_length, threshold = spec["labels"], int(spec["max_length"]), float(spec["threshold"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"router spec {spec_file} is missing or corrupt ({exc})") from exc
    if tuple(labels) != LABELS:
        raise ArtifactError(
            f"{folder}: the router was trained for labels {labels}, this code routes by {list(LABELS)}"
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, SafetensorError, ValueError) as exc:
        raise ArtifactError(f"{folder} is missing or corrupt ({exc})") from exc
    if model.config.num_labels != len(LABELS):
        raise ArtifactError(f"{folder}: a head of {model.config.num_labels} labels, not {len(LABELS)}")
    return Router(model.eval(), tokenizer, max_length, threshold)


def _config(meta: dict, where: Path) -> SupportConfig:
    values = meta.get("config")
    if not isinstance(values, dict):
        raise ArtifactError(f"{where} has no config object")
    unknown = sorted(set(values) - {f.name for f in fields(SupportConfig)})
    if unknown:
        raise ArtifactError(
            f"{where}: unknown config keys {unknown} (written by other code than this; retrain or upgrade)"
        )
    try:
        return SupportConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: invalid config ({exc})") from exc


def load_generator(folder: Path, cache_dir: Path) -> Generator:
    """The generator part of an artifact: its base (checked against the fingerprint it was
    trained on) with the LoRA adapter merged in, if one was trained."""
    spec_file = folder / "generator.json"
    try:
        spec = json.loads(spec_file.read_text())
        base_spec = spec["base"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ArtifactError(f"generator spec {spec_file} is missing or corrupt ({exc})") from exc
    model, tokenizer, info = load_base(base_spec["spec"], cache_dir)
    if info["fingerprint"] != base_spec["fingerprint"]:
        raise ArtifactError(
            f"generator base {base_spec['spec']!r} has changed since training "
            f"(fingerprint {info['fingerprint']} != {base_spec['fingerprint']}); retrain the support model"
        )
    if spec.get("lora"):
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, folder / "adapter").merge_and_unload()
        except Exception as exc:  # safetensors and peft raise many types for a bad file
            raise ArtifactError(f"generator adapter in {folder / 'adapter'} is corrupt ({exc})") from exc
    return Generator(
        model.eval(), tokenizer, info, int(spec.get("max_new_tokens", 60)), lora=bool(spec.get("lora"))
    )


def generator_cache(settings: Settings) -> Path:
    """Where converted generator bases (safetensors copies of GGUF files) are kept."""
    return Path(settings.data_dir) / "support" / "generator-base"


def promoted_tag(settings: Settings | None = None) -> str | None:
    _bentoml(settings)
    record = read_promotion(MODEL_NAME)
    return None if record is None else record["tag"]


def promoted_metrics(settings: Settings | None = None) -> dict | None:
    _bentoml(settings)
    record = read_promotion(MODEL_NAME)
    return None if record is None else record.get("metrics")


def previous_tag(settings: Settings | None = None) -> str | None:
    """The version promoted before the one promoted now, None if there was none."""
    _bentoml(settings)
    record = read_promotion(MODEL_NAME)
    return None if record is None else record.get("previous")


def tag_for(spec: str, settings: Settings | None = None) -> str:
    """A support version for a tag or an alias ("promoted", "previous"); ValueError if the
    alias names nothing yet."""
    tag = {"promoted": promoted_tag, "previous": previous_tag}.get(spec, lambda _: spec)(settings)
    if tag is None:
        raise ValueError(f"no {spec} {MODEL_NAME} model in the model store")
    return tag


def promote(tag: str, metrics: dict, settings: Settings | None = None) -> None:
    """Serve ``tag`` from now on; the version it replaces stays known as ``previous``."""
    current = promoted_tag(settings)
    before = previous_tag(settings) if current == tag else current
    write_promotion(
        MODEL_NAME, {"tag": tag, "metrics": metrics, "promoted_at": time.time(), "previous": before}
    )
