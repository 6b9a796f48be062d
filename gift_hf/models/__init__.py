"""Models: the classic distillation ConvNets and the CIFAR ResNet-18 registered in timm, and
the Hub-native classifier every student and teacher is (``modeling``)."""
