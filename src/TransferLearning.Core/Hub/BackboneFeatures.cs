namespace TransferLearning.Hub;

/// <summary>Which feature vector a backbone hands to the head.</summary>
public enum BackboneFeatures
{
    /// <summary>The network's own pooled feature vector (what a hub "feature vector" model returns; 512 for ResNet18).</summary>
    Pooled,

    /// <summary>
    /// Global average and max pooling of the network's last feature map and of the last map at the resolution before
    /// it (the previous stage: layer3 and layer4 of a ResNet), concatenated: 2 × (C_last + C_previous) values, 1,536 for
    /// ResNet18. Mid-level features help a frozen head on fine-grained photos; train the head with
    /// <see cref="TransferLearner.WithStandardizedFeatures"/>, because max-pooled and average-pooled values differ in
    /// scale. ONNX backbones only (the offline <c>resnet18</c> included).
    /// </summary>
    MultiStage,
}
