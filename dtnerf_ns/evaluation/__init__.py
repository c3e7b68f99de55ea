"""Evaluation of trained models (dtnerf, sahs-nerf) with the metrics of the DT-NeRF and SAHS-NeRF papers (``dtnerf-eval``).

* :mod:`.image_metrics`: PSNR, SSIM, L1 over the whole frame and over the face mask.
* :mod:`.lpips_metric`: LPIPS (AlexNet), whole frame and face mask.
* :mod:`.fid`: Fréchet Inception Distance between rendered and ground-truth test frames.
* :mod:`.landmark_distance`: LMD, mean distance of mediapipe mouth landmarks, in pixels at 512x512.
* :mod:`.syncnet`: SyncNet confidence (syncnet_python's model and offset search).
* :mod:`.lip_sync_score`: an offline lip-sync score without weights (not SyncNet): ROC AUC of the mouth opening
  separating open-vowel from p/b/m frames (pocketsphinx phones), over AV offsets, and the mouth-opening spread.
* :mod:`.weights`: where pretrained weights come from (local torch hub cache or a user's file, never downloaded).
* :mod:`.evaluator`: renders the test split and gathers every metric; :mod:`.report` writes JSON, markdown and PNG
  (file names: :mod:`.output_layout`).
"""
