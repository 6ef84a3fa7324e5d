"""Files shipped with moecache: model specs, hardware presets, sample traces, example configs.

Installed as the `moecache_data` package so that `traces.data_files.data_dir` finds them.
"""
