namespace TransferLearning.Training;

/// <summary>
/// The defaults of <see cref="TransferLearner.FineTune"/>. The head phase trains the head on cached features with the
/// learner's optimizer and rate (Adam, 1e-3 unless set). The backbone phase uses these values for every setting the
/// learner was not given explicitly. They follow fastai's <c>fine_tune</c> and timm's fine-tuning practice, and were
/// chosen by the <c>bench … quality</c> runs on tf_flowers written up in the README.
/// </summary>
public static class FineTuneRecipe
{
    /// <summary>Epochs of the head alone before the backbone trains.</summary>
    public const int FreezeEpochs = 1;

    /// <summary>Peak learning rate of the backbone phase (the one-cycle schedule's top; the head's rate).</summary>
    public const double LearningRate = 5e-4;

    /// <summary>AdamW's decoupled weight decay.</summary>
    public const double WeightDecay = 0.05;

    /// <summary>Label smoothing ε.</summary>
    public const double LabelSmoothing = 0.1;

    /// <summary>The first trained block's rate as a share of the peak rate (geometric up to the last block).</summary>
    public const double LowestBlockRateFactor = 0.01;

    /// <summary>Share of the backbone phase spent warming up in the one-cycle schedule.</summary>
    public const double WarmupFraction = 0.3;

    /// <summary>The head phase's options: the learner's, without augmentation unless it caches views, constant rate.</summary>
    internal static TrainingOptions HeadPhase(TrainingOptions learner)
    {
        var options = learner.Clone();
        if (options.Augmentation.CachedViews == 0)
        {
            options.Augmentation = Augmentation.None;
        }

        options.Schedule = LearningRateSchedule.Constant;
        options.EarlyStopping = null;
        return options;
    }

    /// <summary>The backbone phase's options: the recipe's values for every setting the learner was not given.</summary>
    /// <param name="learner">The learner's options.</param>
    /// <param name="explicitSettings">Names of the learner methods that were called.</param>
    internal static TrainingOptions BackbonePhase(TrainingOptions learner, IReadOnlySet<string> explicitSettings)
    {
        var options = learner.Clone();
        options.Int8Backbone = false; // trained weights run in float
        options.StandardizeFeatures = false; // the head phase folded it into the head
        if (!explicitSettings.Contains(nameof(TransferLearner.WithOptimizer)))
        {
            options.Optimizer = OptimizerKind.AdamW;
        }

        if (!explicitSettings.Contains(nameof(TransferLearner.WithOptimizer)) && !explicitSettings.Contains(nameof(TransferLearner.WithLearningRate)))
        {
            options.LearningRate = LearningRate;
        }

        if (!explicitSettings.Contains(nameof(TransferLearner.WithWeightDecay)))
        {
            options.WeightDecay = WeightDecay;
        }

        if (!explicitSettings.Contains(nameof(TransferLearner.WithSchedule)))
        {
            options.Schedule = LearningRateSchedule.OneCycle(WarmupFraction);
        }

        if (!explicitSettings.Contains(nameof(TransferLearner.WithLabelSmoothing)))
        {
            options.LabelSmoothing = LabelSmoothing;
        }

        if (!explicitSettings.Contains(nameof(TransferLearner.WithDiscriminativeLearningRates)))
        {
            options.LowestBlockRateFactor = LowestBlockRateFactor;
        }

        if (!explicitSettings.Contains(nameof(TransferLearner.WithAugmentation)))
        {
            options.Augmentation = Augmentation.Standard;
        }

        return options;
    }
}
