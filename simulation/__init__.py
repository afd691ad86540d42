"""vidalign.simulation: PISA-style drop scenes (SPEC §3), simulated with PyBullet and rendered offline.

Pipeline, one pure step per module (IO stays with the builder and the exporters)::

    config = DropSceneConfig(resolution=256)                 # config.py: the authors' parameters, validated
    scene = sample_scene(config, seed)                       # scene.py: pure function of (config, seed)
    traj = simulate(scene)                                   # physics.py: PyBullet as Kubric runs it, 240 Hz
    frames = render(scene, traj, "pybullet")                 # render.py: RGB, depth (m), masks [V, N, H, W]
    clip = generate_clip(config, seed); clip_metadata(clip)  # pipeline.py: all of the above + the json record

Also: assets.py (built-in meshes, colours, the seen/unseen split, the catalogue), asset_folders.py (Google
Scanned Objects and Kubric asset folders), meshes.py (OBJ reading, mass properties, textures, V-HACD colliders),
backgrounds.py (environment maps, procedural skies and grounds), pybullet_render.py (the ``pybullet`` renderer),
text.py (PISA-style prompts), kubric_render.py + kubric_compat.py (the ``kubric`` renderer and its patches),
pisabench.py (``vidalign export pisabench``), preview.py (``vidalign preview``). The dataset builder is
``vidalign.datasets_builders.kubric_drop`` (``vidalign build kubric-drop``).
"""
