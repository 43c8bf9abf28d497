"""Video action recognition: the procedural action set and the HMDB-51 / UCF-101 reader, the
streaming classifier (ResNet-10 3D or MoViNet, STMC or SOI), training over the one loop,
evaluation and live classification."""
