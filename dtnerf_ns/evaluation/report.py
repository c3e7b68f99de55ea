"""``dtnerf-eval``'s outputs: ``metrics.json`` (everything), ``metrics.md`` (a table shaped like the DT-NeRF paper's
benchmark table, with the SAHS-NeRF tables' SSIM, L1 and Sync columns) and ``strip.png`` (ground truth, render and
error side by side for a few test frames)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import cv2
import numpy as np
from PIL import Image

from dtnerf_ns.evaluation.evaluator import DEFINITIONS, EvalResult
from dtnerf_ns.evaluation.output_layout import FORMAT, METRICS_JSON, METRICS_MD, STRIP_PNG

ERROR_SCALE = 0.25
"""Mean absolute RGB error shown at full colour in the strip's error column."""
MIN_TILE = 256
"""Strip tiles are enlarged (nearest neighbour, whole factors) to at least this many pixels high."""

COLUMNS = [  # (header, metric, digits)
    ("PSNR ↑", "psnr", 2),
    ("LPIPS ↓", "lpips", 4),
    ("FID ↓", "fid", 3),
    ("LMD ↓", "lmd", 3),
    ("SSIM ↑", "ssim", 4),
    ("L1 ↓", "l1", 4),
    ("Sync ↑", "sync", 3),
]


def _clean(value: Any) -> Any:
    """JSON-safe: NaN / inf -> None (strict JSON has no NaN), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def to_json(result: EvalResult) -> str:
    """metrics.json: the run, every metric (or why it is unavailable), the definitions and the per-frame values."""
    document = {
        "format": FORMAT,
        "version": 1,
        **result.info,
        "metrics": result.metrics,
        "definitions": DEFINITIONS,
        "strip_frames": [s["frame_index"] for s in result.strip],
        "per_frame": result.per_frame,
    }
    return json.dumps(_clean(document), indent=2, ensure_ascii=False) + "\n"


def _fmt(value: Optional[float], digits: int) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _table_values(metrics: Dict[str, Dict[str, Any]], region: str) -> Dict[str, Optional[float]]:
    """The table's numbers for ``region`` ("frame" or "face"); None where a metric is unavailable or has no value."""
    values: Dict[str, Optional[float]] = {}
    for _, name, _ in COLUMNS:
        entry = metrics.get(name, {})
        if not entry.get("available"):
            values[name] = None
        elif name == "lmd":  # mouth metrics: one value, shown in the whole-frame row
            values[name] = entry["value"] if region == "frame" else None
        elif name == "sync":
            values[name] = entry["render"]["confidence"] if region == "frame" else None
        else:
            values[name] = entry.get(region)
    return values


def _lip_sync_lines(entry: Optional[Dict[str, Any]]) -> List[str]:
    """metrics.md's lip-sync section: the offline score of ground truth and render, or why it is unavailable."""
    title = (
        "Offline lip-sync score (not SyncNet, needs no weights): ROC AUC of the mouth opening separating open-vowel "
        "from p/b/m frames (phones from pocketsphinx; 0.5 chance, 1 perfect), best over AV offsets (frames, positive: "
        "video lags audio) and at offset 0."
    )
    if entry is None:
        return []
    if not entry.get("available"):
        return [title, "", f"Unavailable: {entry['reason']}"]
    lines = [
        title,
        "",
        "| | AUC ↑ | offset | AUC at 0 ↑ | mouth-opening std | open / p-b-m frames | faces found |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, key in (("Ground Truth", "ground_truth"), ("render", "render")):
        s = entry[key]
        offset = "–" if s["offset"] is None else f"{s['offset']:+d}"
        lines.append(
            f"| {label} | {_fmt(s['auc'], 3)} | {offset} | {_fmt(s['auc_at_zero'], 3)} | {_fmt(s['opening_std'], 4)} "
            f"| {s['open_frames']} / {s['closed_frames']} | {s['frames_with_face']} / {s['frames']} |"
        )
    r = _fmt(entry["opening_pearson_r"], 3)
    lines += ["", f"Mouth opening, render vs ground truth frame by frame: Pearson r = {r} over "
              f"{entry['frames_compared']} frames."]  # fmt: skip
    for label, key in (("Ground truth", "ground_truth"), ("Render", "render")):
        if entry[key]["reason"]:
            lines.append(f"- {label} not scored: {entry[key]['reason']}")
    return lines


def markdown(result: EvalResult) -> str:
    """metrics.md: the table, footnotes for unavailable metrics, and the definitions."""
    metrics, info = result.metrics, result.info
    notes = {name: i + 1 for i, name in enumerate(n for _, n, _ in COLUMNS if not metrics[n].get("available"))}

    def cells(values: Dict[str, Optional[float]], region: str) -> List[str]:
        out = []
        for _, name, digits in COLUMNS:
            if name in notes and (region == "frame" or name not in ("lmd", "sync")):
                out.append(f"n/a [{notes[name]}]")
            else:
                out.append(_fmt(values[name], digits))
        return out

    sync = metrics["sync"]
    gt_sync = _fmt(sync["ground_truth"]["confidence"], 3) if sync.get("available") else f"n/a [{notes['sync']}]"
    width, height = info["resolution"]
    method = str(info.get("method") or "this method")
    paper = info.get("paper") or {}
    paper_values = paper.get("row", {})
    paper_fps = paper_values.get("fps")
    rows = [
        ["Ground Truth", "N/A", "0", "0", "0", "1", "0", gt_sync, "-"],
        [f"{method} (this model)", *cells(_table_values(metrics, "frame"), "frame"), _fmt(info["render_fps"], 2)],
        [f"{method} (this model)_face", *cells(_table_values(metrics, "face"), "face"), "-"],
    ]
    if paper.get("name"):
        row = [f"{paper['name']} (paper, its data)", *(_fmt(paper_values.get(n), d) for _, n, d in COLUMNS)]
        rows.append(row + ["–" if paper_fps is None else str(paper_fps)])
    header = ["Methods", *(h for h, _, _ in COLUMNS), "FPS"]
    lines = [
        f"# {method} evaluation: {info.get('experiment', '')}".rstrip(),
        "",
        f"Test split of `{info['dataset']}`: {info['frames']} frames at {width}x{height}, checkpoint step "
        f"{info.get('step', '?')}, rendered on {info['device']}.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "`_face`: over the ground-truth face mask. LMD and Sync measure the mouth and have one value. FPS: frames "
        "rendered per second here. The paper's row is the method's published result on its own videos and hardware.",
    ]
    if notes:
        lines.append("")
        lines.extend(f"- [{i}] {name.upper()} unavailable: {metrics[name]['reason']}" for name, i in notes.items())
    lmd = metrics["lmd"]
    if lmd.get("available") and (lmd["no_face_render"] or lmd["no_face_ground_truth"]):
        lines += [
            "",
            f"LMD: mediapipe found no face in {lmd['no_face_render']} render(s) and {lmd['no_face_ground_truth']} "
            "ground-truth frame(s); those frames are not scored.",
        ]
    lip_sync = _lip_sync_lines(metrics.get("lip_sync"))
    lines += ["", *lip_sync] if lip_sync else []
    lines += ["", "Definitions:", ""]
    lines.extend(f"- {name.upper()}: {text}" for name, text in DEFINITIONS.items())
    return "\n".join(lines) + "\n"


def _label(tile: np.ndarray, text: str) -> None:
    cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def strip_image(strip: List[Dict[str, Any]]) -> np.ndarray:
    """One row per frame: ground truth | render | error (mean absolute RGB error, inferno colours, saturating at
    ``ERROR_SCALE``), uint8 RGB."""
    rows = []
    for item in strip:
        gt, render = item["gt"], item["render"]
        error = np.abs(gt.astype(np.float32) - render.astype(np.float32)).mean(-1) / 255.0
        heat = cv2.applyColorMap((np.clip(error / ERROR_SCALE, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
        factor = max(1, math.ceil(MIN_TILE / gt.shape[0]))
        tiles = [np.repeat(np.repeat(t, factor, 0), factor, 1) for t in (gt, render, heat[..., ::-1])]
        tiles = [np.ascontiguousarray(t) for t in tiles]
        for tile, text in zip(tiles, (f"ground truth {item['frame_index']}", "render", f"|error| (max {ERROR_SCALE})")):
            _label(tile, text)
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def write_report(directory: Path, result: EvalResult) -> None:
    """Writes metrics.json, metrics.md and strip.png into ``directory`` (which exists)."""
    (directory / METRICS_JSON).write_text(to_json(result), encoding="utf-8")
    (directory / METRICS_MD).write_text(markdown(result), encoding="utf-8")
    if result.strip:
        Image.fromarray(strip_image(result.strip)).save(directory / STRIP_PNG)
