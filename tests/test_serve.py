"""`medflip serve`: the JSON API on a live server (real sockets, uvicorn in a thread) and the page in a real
browser (Debian's chromium driven by Playwright; `.ci/run` installs it when missing).

Expected answers are computed here from the model's own encoders (prompt ensembles, sentence embeddings),
not through the server's code.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = "/usr/bin/chromium"
CORPUS = [
    "Large right pleural effusion.",
    "The heart is enlarged.",
    "No acute cardiopulmonary abnormality.",
    "Right lower lobe consolidation.",
    "Mild pulmonary edema. Bibasilar atelectasis.",
    "Stable cardiomegaly. Small left effusion.",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from medflip.model.medflip import MedFLIP, ModelConfig
    from medflip.model.text import TextConfig
    from medflip.model.vision import VisionConfig
    from medflip.serve.app import create_app
    from medflip.serve.inference import Analyzer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is faster on a shared CPU (restored below)
    tmp = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    cfg = ModelConfig(
        vision=VisionConfig(size="tiny", image_size=32), text=TextConfig(pretrained=False), embed_dim=32
    )
    MedFLIP(cfg).save_pretrained(tmp / "model")
    analyzer = Analyzer(tmp / "model", corpus=CORPUS, cache_dir=tmp / "cache", progress=False)
    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(
            create_app(analyzer, max_upload_mb=0.5), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield {"url": f"http://127.0.0.1:{port}", "analyzer": analyzer, "tmp": tmp}
    srv.should_exit = True
    thread.join(10)
    torch.set_num_threads(threads)


def _post(url: str, data: bytes, name: str = "x.png") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, method="POST", headers={"X-Filename": name})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _declare_big_upload(base: str, size: int) -> tuple[int, dict]:
    """Announce a `size`-byte upload and read the answer before sending it (the server refuses at once)."""
    import http.client
    from urllib.parse import urlparse

    u = urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest("POST", "/api/analyze")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    r = conn.getresponse()
    out = r.status, json.loads(r.read())
    conn.close()
    return out


def _radiograph(path: Path, seed: int = 0) -> Path:
    from PIL import Image

    from medflip.demo.phantom import render_phantoms
    from medflip.observations import OBSERVATIONS

    labels = np.zeros((1, len(OBSERVATIONS)), np.float32)
    labels[0, OBSERVATIONS.index("Pleural Effusion")] = 1
    Image.fromarray(render_phantoms(labels, seed=seed, size=96)[0]).save(path)
    return path


def _expected(analyzer, path: Path) -> tuple[str, list[str]]:
    """Top CheXpert-5 class and top-3 corpus sentences, from the model's encoders directly."""
    from medflip.data.augment import normalize
    from medflip.data.images import fit_square, open_grayscale
    from medflip.evaluate.prompts import chexpert_prompts
    from medflip.labeler import split_sentences
    from medflip.observations import COMPETITION_TASKS

    model = analyzer.model
    x = normalize(torch.from_numpy(fit_square(open_grayscale(path), 32))[None, None])
    img = model.encode_image(x)[0]
    prompts = chexpert_prompts(list(COMPETITION_TASKS), 10)
    cls = torch.stack(
        [torch.nn.functional.normalize(model.encode_text(p).mean(0), dim=-1) for p in prompts.values()]
    )
    sentences = list(dict.fromkeys(s for r in CORPUS for s in split_sentences(r)))
    sims = model.encode_text(sentences) @ img
    return COMPETITION_TASKS[int((cls @ img).argmax())], [
        sentences[i] for i in sims.argsort(descending=True)[:3]
    ]


def test_analyze_and_ground_api(server, tmp_path, one_thread):
    png = _radiograph(tmp_path / "cxr.png")
    code, data = _post(server["url"] + "/api/analyze", png.read_bytes(), "cxr.png")
    assert code == 200, data
    top, sentences = _expected(server["analyzer"], png)
    assert data["top_finding"] == top
    assert [s["text"] for s in data["sentences"][:3]] == sentences
    assert [o["name"] for o in data["chexpert5"]][:1] == ["Atelectasis"]
    assert sum(o["probability"] for o in data["chexpert5"]) == pytest.approx(1.0, abs=1e-3)
    assert len(data["observations"]) == 14 and all(0 <= o["probability"] <= 1 for o in data["observations"])
    g = data["grounding"]
    assert g["phrase"] == top.lower() and g["heatmap_png"].startswith("data:image/png;base64,")
    assert np.asarray(g["grid"]).shape == (2, 2)  # 32 px / 16 px patches
    code, g2 = _post(server["url"] + "/api/ground?phrase=left%20pleural%20effusion", png.read_bytes())
    assert code == 200 and g2["words"] == ["left", "pleural", "effusion"]


def test_bad_uploads_are_4xx_and_the_server_keeps_serving(server, tmp_path, cxr, one_thread):
    url = server["url"] + "/api/analyze"
    png = _radiograph(tmp_path / "cxr.png").read_bytes()
    code, data = _post(url, b"just some notes\n", "notes.txt")
    assert code == 422 and "notes.txt is not a readable PNG / JPEG / DICOM image" in data["error"]
    code, data = _post(url, png[: len(png) // 3], "cut.png")
    assert code == 422 and "cut.png" in data["error"] and "truncated" in data["error"]
    dcm = cxr.dicom(tmp_path / "nopix.dcm", np.zeros((8, 8), np.uint16))
    import pydicom

    ds = pydicom.dcmread(dcm)
    del ds.PixelData
    ds.save_as(dcm)
    code, data = _post(url, dcm.read_bytes(), "nopix.dcm")
    assert code == 422 and "no pixel data" in data["error"]
    code, data = _declare_big_upload(
        server["url"], 200 * 2**20
    )  # a 200 MB upload; this server's limit: 0.5 MB
    assert code == 413 and "upload of 200.0 MB is over the 0.5 MB limit" in data["error"]
    code, data = _post(url, b"", "empty.png")
    assert code == 400 and "empty upload" in data["error"]
    code, data = _post(server["url"] + "/api/ground?phrase=%20", png)
    assert code == 400 and "phrase" in data["error"]
    # still serving, and concurrent requests all answer the same
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _post(url, png), range(4)))
    assert all(code == 200 for code, _ in answers)
    assert len({json.dumps(a["chexpert5"]) for _, a in answers}) == 1


def test_corpus_embeddings_are_cached_by_model_hash(server, monkeypatch):
    from medflip.serve.inference import Analyzer

    files = list((server["tmp"] / "cache").glob("*.npy"))
    assert len(files) == 1 and files[0].name.startswith(server["analyzer"].model_hash[:16])
    calls = []
    real = Analyzer._sentence_index

    def spy(self, corpus, cache_dir, progress):
        orig = self.model.encode_text
        self.model.encode_text = lambda texts, **kw: calls.append(len(texts)) or orig(texts, **kw)
        return real(self, corpus, cache_dir, progress)

    monkeypatch.setattr(Analyzer, "_sentence_index", spy)
    again = Analyzer(
        server["tmp"] / "model", corpus=CORPUS, cache_dir=server["tmp"] / "cache", progress=False
    )
    assert len(again.index.sentences) == len(server["analyzer"].index.sentences)
    # prompts are embedded (5 + 14 ensembles), the corpus is not: no call with the corpus's sentence count
    assert len(again.index.sentences) not in calls
    torch.testing.assert_close(again.index.embeds, server["analyzer"].index.embeds)


def _browser_or_skip():
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"no browser: {CHROMIUM} is missing (.ci/run installs Debian's chromium; apt-get install chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    return sync_playwright


def test_page_in_a_real_browser(server, tmp_path, one_thread):
    sync_playwright = _browser_or_skip()
    png = _radiograph(tmp_path / "cxr.png", seed=3)
    top, _ = _expected(server["analyzer"], png)
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a radiograph\n")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=flags
        )
        try:
            page = ctx.new_page()
            page.goto(server["url"] + "/")
            page.wait_for_function(
                "document.getElementById('model-info').textContent.includes('corpus sentences')"
            )
            page.set_input_files("#file", str(png))
            page.wait_for_selector("#chexpert5 .row", timeout=60_000)
            page.wait_for_function(
                "() => { const h = document.getElementById('heatmap'); return h.complete && h.naturalWidth > 0; }",
                timeout=60_000,
            )
            assert page.inner_text("#top-finding") == top
            assert page.locator("#chexpert5 .row").count() == 5
            assert page.locator("#observations .row").count() == 14
            assert page.locator("#sentences li").count() == 5  # top-k of a 7-sentence corpus
            assert page.input_value("#phrase") == top.lower()
            assert page.evaluate("document.getElementById('heatmap').naturalWidth") == 320
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
            # a typed phrase re-grounds
            page.fill("#phrase", "pleural effusion")
            page.click("#ground-form button")
            page.wait_for_function(
                "document.getElementById('ground-caption').textContent.startsWith('\"pleural effusion\"')"
            )
            # a text file: a clear error on the page, the previous results stay
            page.set_input_files("#file", str(notes))
            page.wait_for_selector("#error:not([hidden])", timeout=30_000)
            assert "notes.txt is not a readable PNG / JPEG / DICOM image" in page.inner_text("#error")
            page.screenshot(path=str(tmp_path / "serve_error.png"), full_page=True)
        finally:
            ctx.close()
    keep = Path("/tmp/medflip-serve-screenshots")  # for a person to look at after a local run
    keep.mkdir(exist_ok=True)
    for name in ("serve.png", "serve_error.png"):
        shutil.copy(tmp_path / name, keep / name)
