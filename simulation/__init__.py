"""vidalign.simulation: PISA-style drop scenes (SPEC §3), simulated with PyBullet and rendered offline.

Pipeline, one pure step per module (IO stays with the builder and the exporters)::

    config = DropSceneConfig(resolution=256)                 # config.py: the authors' parameters, validated
    scene = sample_scene(config, seed)                       # scene.py: pure function of (config, seed)
    traj = simulate(scene)                                   # physics.py: PyBullet DIRECT, 240 Hz, contacts
    frames = render(scene, traj, "pybullet")                 # render.py: RGB, metric depth, masks [V, N, H, W]
    clip = generate_clip(config, seed); clip_metadata(clip)  # pipeline.py: all of the above + the json record

Also: assets.py (offline meshes, colours, seen/unseen split, user asset folders), text.py (PISA-style prompts),
kubric_render.py + kubric_compat.py (the ``kubric`` renderer and its patches), pisabench.py
(``vidalign export pisabench``), preview.py (``vidalign preview``). The dataset builder is
``vidalign.datasets_builders.kubric_drop`` (``vidalign build kubric-drop``).
"""
