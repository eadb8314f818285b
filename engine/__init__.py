"""What runs the method fast and safe: the command line, a row of Table I in its run folder (resume, shards,
locks, training processes), folds on the device (CUDA graphs, streams), checkpoints and stop signals, the feature
cache and its workers, ImageNet weights and model.pt, atomic files. It calls the method; the method never calls it."""
