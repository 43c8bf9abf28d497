"""The speech-separation U-Net of the SOI paper, with its SOI pattern chosen by name.

Input ``(B, C_in, T, F)`` STFT frames (e.g. real and imaginary parts), output ``(B, C_out, T, F)``
(e.g. a complex mask: the last decoder level is linear). ``depth = len(config.channels)`` levels,
counted from 1 at the input::

    level k:   enc_k  ->  [ e_k | level k+1 ]  ->  dec_k          (level depth: enc -> dec)
    enc_k = STMC conv (kt, kf), frequency stride, BatchNorm, ELU
    dec_k = tSTMC (transposed in frequency) over the concatenated skip, BatchNorm, ELU
            (dec_1: the convolution only)

Patterns (levels ``1..depth``):

* ``"STMC"``: every layer at every frame.
* ``"Predictive n"``: the whole output shifted ``n`` frames (it predicts ``n`` frames ahead).
* ``"S-CC k"``: enc_k strided in time; levels ``k..depth`` run at rate ``1/s``; dec_k's output is
  upsampled (duplicated by default) and meets the full-rate skip of level ``k-1``.
* ``"2xS-CC a b"`` (``"3xS-CC a b c"``, ...): nested pairs, rates ``1/s``, ``1/s**2``, ...
* ``"SS-CC k"``: the S-CC pair at level ``k`` and a one-frame shift of its output (FP).
* ``"SS-CC a b"``: the S-CC pair at level ``a`` and the one-frame shift at level ``b`` (at that
  level's rate).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from torch import Tensor, nn

from ..core.containers import Concat, DelayLine, Sequential, Wrapper
from ..layers.conv import STMCConv2d
from ..layers.conv_transpose import STMCConvTranspose2d
from ..scattered import SC, UPSAMPLERS, SCCPair, STMCStridedPair, make_upsampler
from ..core.state import State, StreamingModule

__all__ = ["UNetConfig", "UNet", "Pattern", "parse_pattern", "PATTERN_FORMS", "PRESETS"]

PRESETS = ("paper", "medium", "small")
"""Configs shipped in ``soi/assets``: ``unet_<name>.json``."""


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet` (frozen; read and written as JSON).

    Attributes:
        freq_bins: frequency bins of the input (513 for an STFT of 1024).
        in_channels, out_channels: e.g. 2 and 2 (real/imaginary in, complex mask out).
        channels: encoder channels, one per level (its length is the depth).
        kernel: ``[time, freq]`` kernel of every encoder and decoder convolution.
        freq_stride: frequency stride of every encoder level (transposed in its decoder).
        lookahead: future frames the model may see (put in the first encoder convolution;
            ``<= kernel[0] - 1``).
        time_stride: the time stride of every S-CC pair.
        upsample_elements: compressed elements the learned ``"transposed"`` upsampler combines.
    """

    freq_bins: int = 513
    in_channels: int = 2
    out_channels: int = 2
    channels: tuple[int, ...] = (32, 32, 32, 64, 128, 256, 384)
    kernel: tuple[int, int] = (2, 5)
    freq_stride: int = 2
    lookahead: int = 0
    time_stride: int = 2
    upsample_elements: int = 1

    def __post_init__(self) -> None:
        for name in ("channels", "kernel"):
            values = getattr(self, name)
            # int() would make 16.5 channels 16: a config that is not what it says is refused.
            if not isinstance(values, (list, tuple)) or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
                raise ValueError(f"UNetConfig.{name} must be a list of integers, got {values!r}")
            object.__setattr__(self, name, tuple(int(v) for v in values))
        for name in ("freq_bins", "in_channels", "out_channels", "freq_stride", "time_stride", "upsample_elements"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"UNetConfig.{name} must be a positive int, got {v!r}")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"UNetConfig.channels must be a non-empty list of positive ints, got {list(self.channels)}")
        if len(self.kernel) != 2 or any(k < 1 for k in self.kernel):
            raise ValueError(f"UNetConfig.kernel must be [time, freq] with positive sizes, got {list(self.kernel)}")
        if not isinstance(self.lookahead, int) or not 0 <= self.lookahead <= self.kernel[0] - 1:
            raise ValueError(f"UNetConfig.lookahead must be between 0 and kernel[0]-1 = {self.kernel[0] - 1}, got {self.lookahead!r}")
        sizes = self.freq_sizes
        if sizes[-1] < 1:
            raise ValueError(f"UNetConfig: {self.freq_bins} bins become {sizes} through {self.depth} levels; use fewer levels")
        for k in range(1, self.depth + 1):
            self.output_padding(k)  # raises if the decoder cannot restore the size

    # -- derived ----------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.channels)

    @property
    def freq_padding(self) -> int:
        return (self.kernel[1] - 1) // 2

    @property
    def freq_sizes(self) -> tuple[int, ...]:
        """Frequency size at the input of level 1, ..., and at the output of the last encoder."""
        kf, st, p = self.kernel[1], self.freq_stride, self.freq_padding
        sizes = [self.freq_bins]
        for _ in self.channels:
            sizes.append((sizes[-1] + 2 * p - kf) // st + 1)
        return tuple(sizes)

    def output_padding(self, level: int) -> int:
        """Frequency output padding of decoder ``level`` so that it restores the encoder's input size."""
        kf, st, p = self.kernel[1], self.freq_stride, self.freq_padding
        f_in, f_out = self.freq_sizes[level], self.freq_sizes[level - 1]
        op = f_out - ((f_in - 1) * st - 2 * p + kf)
        if not 0 <= op < st:
            raise ValueError(
                f"UNetConfig: decoder level {level} cannot map {f_in} bins back to {f_out} with kernel {kf}, stride {st}"
            )
        return op

    # -- JSON ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        d["kernel"] = list(self.kernel)
        return d

    def to_json(self, path: str | Path | None = None) -> str:
        """The config as JSON text; also written to ``path`` if given."""
        text = "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in self.to_dict().items()) + "\n}\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"UNetConfig: unknown keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, source: str | Path) -> UNetConfig:
        """From a JSON file path, a JSON string, or a preset name (``"paper"``, ``"small"``)."""
        if isinstance(source, str) and source in PRESETS:
            return cls.preset(source)
        if isinstance(source, str) and source.lstrip().startswith("{"):
            text = source
        else:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"UNetConfig: no such file {str(path)!r} (presets: {', '.join(PRESETS)})")
            text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"UNetConfig: invalid JSON in {str(source)[:80]!r}: {err}") from None
        if not isinstance(data, dict):
            raise ValueError("UNetConfig: the JSON must be an object")
        return cls.from_dict(data)

    @classmethod
    def preset(cls, name: str) -> UNetConfig:
        """A shipped config: ``"paper"`` (close to the SOI paper's U-Net), ``"medium"`` (twice the small one's
        channels: the shipped speech model, trained on a CPU in hours) or ``"small"`` (fast CPU training)."""
        if name not in PRESETS:
            raise ValueError(f"UNetConfig.preset: unknown preset {name!r}; valid: {', '.join(PRESETS)}")
        text = resources.files("soi").joinpath("assets", f"unet_{name}.json").read_text()
        return cls.from_dict(json.loads(text))


# ==================================================================================================
# Patterns
# ==================================================================================================

PATTERN_FORMS = (
    "'STMC'",
    "'Predictive n' (output shifted n >= 1 frames)",
    "'S-CC k' (S-CC pair at level k)",
    "'2xS-CC a b' (nested pairs at levels a < b; also '3xS-CC a b c', ...)",
    "'SS-CC k' (S-CC pair and one-frame shift at level k)",
    "'SS-CC a b' (S-CC pair at level a, one-frame shift at level b)",
)


@dataclass(frozen=True)
class Pattern:
    """A parsed SOI pattern: the levels with an S-CC pair and the shifts ``(level, frames)``."""

    text: str
    pairs: tuple[int, ...] = ()
    shifts: tuple[tuple[int, int], ...] = ()

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.pairs) | {lv for lv, _ in self.shifts}))


def _pattern_error(text: str, depth: int | None, why: str) -> ValueError:
    where = f" for this {depth}-level U-Net (levels 1..{depth})" if depth else ""
    return ValueError(f"SOI pattern {text!r}: {why}. Valid forms{where}: " + ", ".join(PATTERN_FORMS))


def parse_pattern(text: str, depth: int | None = None) -> Pattern:
    """Parse a pattern name (case and spacing are free); levels are checked against ``depth``."""
    if not isinstance(text, str):
        raise TypeError(f"pattern must be a string, got {type(text).__name__}")
    t = " ".join(text.split()).lower()
    m_pred = re.fullmatch(r"predictive (\d+)", t)
    m_scc = re.fullmatch(r"s-cc (\d+)", t)
    m_nx = re.fullmatch(r"(\d+) ?x ?s-cc((?: \d+)+)", t)
    m_ss = re.fullmatch(r"ss-cc (\d+)(?: (\d+))?", t)
    if t == "stmc":
        pat = Pattern("STMC")
    elif m_pred:
        n = int(m_pred.group(1))
        if n < 1:
            raise _pattern_error(text, depth, "the prediction must be at least 1 frame")
        pat = Pattern(f"Predictive {n}", shifts=((1, n),))
    elif m_scc:
        k = int(m_scc.group(1))
        pat = Pattern(f"S-CC {k}", pairs=(k,))
    elif m_nx:
        count = int(m_nx.group(1))
        levels = tuple(int(v) for v in m_nx.group(2).split())
        if count < 2 or len(levels) != count:
            raise _pattern_error(text, depth, f"'{count}xS-CC' needs {count} levels, got {len(levels)}")
        if any(b <= a for a, b in zip(levels, levels[1:])):
            raise _pattern_error(text, depth, "the levels of nested pairs must increase")
        pat = Pattern(f"{count}xS-CC " + " ".join(map(str, levels)), pairs=levels)
    elif m_ss:
        a = int(m_ss.group(1))
        b = int(m_ss.group(2)) if m_ss.group(2) else a
        name = f"SS-CC {a}" if m_ss.group(2) is None else f"SS-CC {a} {b}"
        pat = Pattern(name, pairs=(a,), shifts=((b, 1),))
    else:
        raise _pattern_error(text, depth, "unknown pattern")
    for lv in pat.levels:
        if lv < 1 or (depth is not None and lv > depth):
            raise _pattern_error(text, depth, f"level {lv} is outside the network")
    return pat


# ==================================================================================================
# The model
# ==================================================================================================


def _key_map(graph: nn.Module, level: dict[int, str]) -> dict[str, str]:
    """``graph`` state-dict key -> level key, for every parameter and buffer of ``graph`` whose
    module has a level name (``level``: ``id(module) -> name``)."""
    keys = {}
    for path, m in graph.named_modules():
        if id(m) in level:
            for leaf, _ in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
                keys[f"{path}.{leaf}" if path else leaf] = f"{level[id(m)]}.{leaf}"
    return keys


def _rename(state_dict: dict, prefix: str, pairs: Iterable[tuple[str, str]]) -> None:
    metadata = getattr(state_dict, "_metadata", None)
    for old, new in pairs:
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)
        if metadata is not None:
            old_m, new_m = (prefix + old).rpartition(".")[0], (prefix + new).rpartition(".")[0]
            if old_m in metadata:
                metadata[new_m] = metadata.pop(old_m)


def _to_level_keys(module: UNet, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    _rename(state_dict, prefix, ((f"graph.{g}", lv) for g, lv in module._graph_keys.items()))


def _from_level_keys(module: UNet, state_dict: dict, prefix: str, *args: Any) -> None:
    _rename(state_dict, prefix, ((lv, f"graph.{g}") for g, lv in module._graph_keys.items()))


class UNet(Wrapper):
    """The SOI paper's speech-separation U-Net as a streaming module.

    Args:
        config: a :class:`UNetConfig` (or a dict / JSON path / preset name).
        pattern: the SOI pattern, see the module docstring (default ``"S-CC 2"``).
        upsampler: how each S-CC pair returns to full rate: one of ``"duplicate"`` (PP default),
            ``"transposed"`` (learned), ``"nearest"``, ``"linear"``, ``"cubic"`` (these add latency),
            or a list with one name per pair (inner pairs last), e.g. the paper's hybrid
            ``["duplicate", "transposed"]``.
        strided_mode: ``"soi"`` (skip the deep layers on off-grid frames) or ``"stmc"`` (STMC's
            exact treatment: every frame aligned, one deep state per stride phase).

    The registered module tree is the streaming graph itself (``print(model)`` shows its pairs,
    concatenations and upsamplers). Checkpoint keys do not follow the graph's paths: they name
    each layer by its level, ``encoders.<k-1>.layers.<i>.*``, ``decoders.<k-1>.layers.<i>.*`` and
    ``upsamplers.<k>.*`` for learned upsamplers, the same for every pattern and mode, so weights
    move between patterns with :meth:`with_pattern` (``state_dict`` and ``load_state_dict``
    translate; ``named_parameters`` gives the graph's paths).
    """

    def __init__(
        self,
        config: UNetConfig | dict | str | Path | None = None,
        pattern: str = "S-CC 2",
        upsampler: str | Sequence[str] = "duplicate",
        strided_mode: str = "soi",
    ) -> None:
        super().__init__()
        if config is None:
            config = UNetConfig()
        elif isinstance(config, dict):
            config = UNetConfig.from_dict(config)
        elif isinstance(config, (str, Path)):
            config = UNetConfig.from_json(config)
        if not isinstance(config, UNetConfig):
            raise TypeError(f"UNet: config must be a UNetConfig, got {type(config).__name__}")
        if strided_mode not in ("soi", "stmc"):
            raise ValueError(f"UNet: strided_mode must be 'soi' or 'stmc', got {strided_mode!r}")
        self.config = config
        self.spec = parse_pattern(pattern, config.depth)
        self.pattern = self.spec.text
        self.strided_mode = strided_mode
        pairs = sorted(self.spec.pairs)
        names = [upsampler] * len(pairs) if isinstance(upsampler, str) else list(upsampler)
        if len(names) != len(pairs):
            raise ValueError(f"UNet: {len(names)} upsamplers given for {len(pairs)} S-CC pairs in {self.pattern!r}")
        for name in names:
            if name not in UPSAMPLERS:
                raise ValueError(f"UNet: unknown upsampler {name!r}; valid: {', '.join(UPSAMPLERS)}")
        self.upsampler_names = dict(zip(pairs, names))
        self.upsampler = upsampler if isinstance(upsampler, str) else tuple(upsampler)
        if config.lookahead and 1 in self.spec.pairs:
            raise ValueError(
                f"UNet: lookahead={config.lookahead} lives in the first encoder convolution, which pattern "
                f"{self.pattern!r} strides in time; put the first S-CC pair at level 2 or deeper, or use lookahead 0"
            )

        c = config
        kt, kf = c.kernel
        fs, p = c.freq_sizes, c.freq_padding
        ch = (c.in_channels, *c.channels)
        encoders, decoders, upsamplers = nn.ModuleList(), nn.ModuleList(), nn.ModuleDict()
        for k in range(1, c.depth + 1):
            conv = STMCConv2d(
                ch[k - 1], ch[k], (kt, kf),
                stride=(c.time_stride if k in self.spec.pairs else 1, c.freq_stride),
                padding=p,
                lookahead=c.lookahead if k == 1 else 0,
                frame_size=(fs[k - 1],),
            )  # fmt: skip
            encoders.append(Sequential(conv, nn.BatchNorm2d(ch[k]), nn.ELU()))
            dec_in = ch[k] * (2 if k < c.depth else 1)
            dec_out = c.out_channels if k == 1 else ch[k - 1]
            convt = STMCConvTranspose2d(
                dec_in, dec_out, (kt, kf),
                stride=(1, c.freq_stride), padding=p, output_padding=c.output_padding(k), frame_size=(fs[k],),
            )  # fmt: skip
            decoders.append(Sequential(convt) if k == 1 else Sequential(convt, nn.BatchNorm2d(dec_out), nn.ELU()))
        for k, name in self.upsampler_names.items():
            if name == "transposed":
                out_c = c.out_channels if k == 1 else ch[k - 1]
                upsamplers[str(k)] = make_upsampler(name, c.time_stride, out_c, (fs[k - 1],), elements=c.upsample_elements)
        self.graph = self._build(1, encoders, decoders, upsamplers)
        # Checkpoint keys name the layers by level ("encoders.<k-1>.layers.<i>.weight", ...), the
        # same for every pattern, while the graph's own paths depend on the pattern: the keys are
        # translated both ways, so weights move between patterns and old checkpoints load.
        owners = {"encoders": encoders, "decoders": decoders, "upsamplers": upsamplers}
        level = {id(m): name for prefix, owner in owners.items() for name, m in owner.named_modules(prefix=prefix)}
        self._level_paths = {path: level[id(m)] for path, m in self.graph.named_modules(prefix="graph") if id(m) in level}
        self._graph_keys = _key_map(self.graph, level)
        self.register_state_dict_post_hook(_to_level_keys)
        self.register_load_state_dict_pre_hook(_from_level_keys)

    # -- construction ----------------------------------------------------------------------------
    def _level_channels(self, k: int) -> int:
        """Channels of decoder ``k``'s output (= of level ``k``)."""
        return self.config.out_channels if k == 1 else self.config.channels[k - 2]

    def _build(self, k: int, encoders: nn.ModuleList, decoders: nn.ModuleList, upsamplers: nn.ModuleDict) -> StreamingModule:
        c = self.config
        enc, dec = encoders[k - 1], decoders[k - 1]
        parts = list(enc.layers)
        if k < c.depth:
            deeper = self._build(k + 1, encoders, decoders, upsamplers)
            skip_c, skip_f = c.channels[k - 1], (c.freq_sizes[k],)
            skip = DelayLine(deeper.delay, skip_c, skip_f) if deeper.delay else nn.Identity()
            parts.append(Concat(skip, deeper))
        parts.extend(dec.layers)
        body: StreamingModule = Sequential(*parts)
        out_c, out_f = self._level_channels(k), (c.freq_sizes[k - 1],)
        if k in self.spec.pairs:
            name = self.upsampler_names[k]
            up = upsamplers[str(k)] if name == "transposed" else make_upsampler(name, c.time_stride, out_c, out_f)
            body = (STMCStridedPair if self.strided_mode == "stmc" else SCCPair)(body, up)
        for level, frames in self.spec.shifts:
            if level == k:
                body = SC(body, frames, channels=out_c, frame_size=out_f)
        return body

    def with_pattern(
        self, pattern: str | None = None, upsampler: str | Sequence[str] | None = None, strided_mode: str | None = None
    ) -> UNet:
        """A new U-Net with the same config and a copy of these weights, under another pattern,
        upsampler or strided mode (learned upsamplers that do not exist here start fresh)."""
        new = UNet(
            self.config,
            self.pattern if pattern is None else pattern,
            self.upsampler if upsampler is None else upsampler,
            self.strided_mode if strided_mode is None else strided_mode,
        )
        p = next(self.parameters())
        new = new.to(device=p.device, dtype=p.dtype).train(self.training)  # before loading: no rounding
        mine = self.state_dict()
        new.load_state_dict({k: mine.get(k, v) for k, v in new.state_dict().items()})
        return new

    def layer_names(self) -> dict[int, str]:
        names = super().layer_names()
        for path, m in self.named_modules():
            if path in self._level_paths:
                names[id(m)] = self._level_paths[path]
        return names

    def baseline(self) -> UNet:
        """The same network with pattern ``"STMC"`` (the reference of the retained percentage)."""
        return UNet(self.config, "STMC")

    @property
    def inner(self) -> StreamingModule:
        return self.graph

    @property
    def input_frame_shape(self) -> tuple[int, int]:
        """``(C_in, F)`` of one input frame."""
        return self.config.in_channels, self.config.freq_bins

    # -- protocol ---------------------------------------------------------------------------------
    def init_state(self, batch_size: int, device=None, dtype=None) -> State:
        p = next(self.parameters())
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
        return super().init_state(batch_size, device, dtype)

    def _check_input(self, x: Tensor) -> None:
        c = self.config
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != c.in_channels or x.shape[3] != c.freq_bins:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"UNet: expected input (B, {c.in_channels}, T, {c.freq_bins}), got {got}")

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        self._check_input(x)
        return super().step(x, state)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return super().forward(x)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"pattern={self.pattern!r}, upsampler={self.upsampler!r}, strided_mode={self.strided_mode!r}, "
            f"freq_bins={c.freq_bins}, channels={list(c.channels)}, kernel={list(c.kernel)}, lookahead={c.lookahead}"
        )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
