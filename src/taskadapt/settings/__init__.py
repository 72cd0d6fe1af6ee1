"""The protocols: how methods are compared, and the three generalization settings of the paper
(method.md §8, docs/settings.md).

* :mod:`.compare` -- every method on one protocol, over one or several seeds, Delta_m against ``stl``
  (``taskadapt compare``);
* :mod:`.zeroshot` -- zero-shot task transfer (``taskadapt zeroshot``);
* :mod:`.adapt` -- unsupervised domain adaptation with output-space discriminators (``taskadapt adapt``);
* :mod:`.domains` -- novel domains without fine-tuning (``taskadapt eval`` over several datasets);
* :mod:`.real_images` -- a trained model on real photographs with edge or depth ground truth
  (``taskadapt eval-real``; evaluation only, scored beside trivial baselines).

Each protocol trains (or reuses) the runs it needs under one output folder, scores them with
:func:`taskadapt.evaluation.evaluate_run` (the exact metrics of ``taskadapt eval``), and writes a JSON and a
Markdown table. :mod:`.common` holds what they share.
"""
