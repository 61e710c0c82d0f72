"""`medflip demo`: pre-train a small MedFLIP model on built-in data, evaluate it, show where it looks.

Nothing is downloaded. Text is REAL: the Indiana University chest X-ray reports bundled with
torchxrayvision, labelled by medflip's report labeler. Images are SYNTHETIC phantom radiographs rendered
to show each report's findings (medflip.demo.phantom; not medical data). Images and texts are drawn
independently: an image and a sentence are positives when their label vectors agree.

The demo prints zero-shot accuracy (5 CheXpert classes, held-out phantoms), retrieval of held-out report
sentences, and a grounding check (does the class name light up where the phantom drew the finding?), and
writes the model, metrics.json, plots and one grounding figure per class into the run folder.

The run writes its data as any dataset (phantom PNGs + manifest, an image cache with train and test splits,
the training reports as a corpus CSV) and trains through `medflip pretrain`'s path, so its config.json
retrains it: `medflip pretrain --config runs/demo/config.json --train.out runs/demo-again`.

Modules: config (DemoConfig: a PretrainConfig with the demo's defaults + a `demo` section), data (IU labels ->
balanced rows -> phantoms -> files on disk), phantom (the renderer), grounding (scores against the drawn
findings), runner (the run), cli (the command).
"""
