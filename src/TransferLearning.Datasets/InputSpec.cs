namespace TransferLearning.Datasets;

/// <summary>Order of the colour channels in the tensors fed to a network.</summary>
public enum ChannelOrder
{
    /// <summary>Red, green, blue (PyTorch, Keras).</summary>
    Rgb,

    /// <summary>Blue, green, red (Caffe/CNTK-era models).</summary>
    Bgr,
}

/// <summary>How an image is brought to the input size.</summary>
public enum ResizeMode
{
    /// <summary>Stretch to the exact size, ignoring the aspect ratio (what <c>tf.image.resize</c> does).</summary>
    Stretch,

    /// <summary>Scale the shorter side to the target, then cut the centre (aspect ratio kept).</summary>
    CenterCrop,
}

/// <summary>
/// What a network expects as input: size, value range, channel order and per-channel normalisation.
/// A backbone declares one; the data pipeline obeys it. A pixel value <c>p</c> in 0..255 becomes
/// <c>((RangeMin + p / 255 * (RangeMax - RangeMin)) - Mean[c]) / Std[c]</c>.
/// </summary>
public sealed record InputSpec
{
    /// <summary>Creates a spec; every value is validated.</summary>
    /// <param name="width">Input width in pixels (&gt; 0).</param>
    /// <param name="height">Input height in pixels (&gt; 0).</param>
    /// <param name="rangeMin">Value a 0 pixel maps to before mean/std (e.g. 0, or -1).</param>
    /// <param name="rangeMax">Value a 255 pixel maps to before mean/std (e.g. 1, or 255); must exceed <paramref name="rangeMin"/>.</param>
    /// <param name="channelOrder">Channel order of the tensor.</param>
    /// <param name="mean">Per-channel mean subtracted after scaling (3 values, in tensor channel order); null for none.</param>
    /// <param name="std">Per-channel standard deviation divided after subtracting the mean (3 positive values); null for none.</param>
    /// <param name="resizeMode">Default resize mode for this network.</param>
    public InputSpec(
        int width,
        int height,
        float rangeMin = 0f,
        float rangeMax = 1f,
        ChannelOrder channelOrder = ChannelOrder.Rgb,
        IReadOnlyList<float>? mean = null,
        IReadOnlyList<float>? std = null,
        ResizeMode resizeMode = ResizeMode.Stretch)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        if (!(rangeMax > rangeMin) || !float.IsFinite(rangeMin) || !float.IsFinite(rangeMax))
        {
            throw new ArgumentException($"The value range must be finite with rangeMax > rangeMin; got {rangeMin}..{rangeMax}.", nameof(rangeMax));
        }

        mean ??= [0f, 0f, 0f];
        std ??= [1f, 1f, 1f];
        if (mean.Count != 3 || mean.Any(m => !float.IsFinite(m)))
        {
            throw new ArgumentException("mean must have exactly 3 finite values (one per channel).", nameof(mean));
        }

        if (std.Count != 3 || std.Any(s => !(s > 0) || !float.IsFinite(s)))
        {
            throw new ArgumentException("std must have exactly 3 finite positive values (one per channel).", nameof(std));
        }

        if (!Enum.IsDefined(channelOrder))
        {
            throw new ArgumentOutOfRangeException(nameof(channelOrder), channelOrder, "Unknown channel order.");
        }

        if (!Enum.IsDefined(resizeMode))
        {
            throw new ArgumentOutOfRangeException(nameof(resizeMode), resizeMode, "Unknown resize mode.");
        }

        Width = width;
        Height = height;
        RangeMin = rangeMin;
        RangeMax = rangeMax;
        ChannelOrder = channelOrder;
        Mean = [.. mean];
        Std = [.. std];
        ResizeMode = resizeMode;
    }

    /// <summary>Input width in pixels.</summary>
    public int Width { get; }

    /// <summary>Input height in pixels.</summary>
    public int Height { get; }

    /// <summary>Value a 0 pixel maps to before the mean/std step.</summary>
    public float RangeMin { get; }

    /// <summary>Value a 255 pixel maps to before the mean/std step.</summary>
    public float RangeMax { get; }

    /// <summary>Channel order of the tensor.</summary>
    public ChannelOrder ChannelOrder { get; }

    /// <summary>Per-channel mean (tensor channel order).</summary>
    public IReadOnlyList<float> Mean { get; }

    /// <summary>Per-channel standard deviation (tensor channel order).</summary>
    public IReadOnlyList<float> Std { get; }

    /// <summary>How images are brought to <see cref="Width"/>×<see cref="Height"/>.</summary>
    public ResizeMode ResizeMode { get; }

    /// <summary>ImageNet statistics on 0..1 RGB input, as torchvision models expect.</summary>
    public static InputSpec ImageNet(int size = 224) =>
        new(size, size, 0f, 1f, ChannelOrder.Rgb, [0.485f, 0.456f, 0.406f], [0.229f, 0.224f, 0.225f]);

    /// <summary>Scale to [-1, 1] (x / 127.5 − 1), as Keras MobileNet models expect.</summary>
    public static InputSpec MinusOneToOne(int size = 224) => new(size, size, -1f, 1f);

    /// <summary>Returns this spec with another input size.</summary>
    /// <param name="width">New width.</param>
    /// <param name="height">New height.</param>
    public InputSpec WithSize(int width, int height) =>
        new(width, height, RangeMin, RangeMax, ChannelOrder, Mean, Std, ResizeMode);

    /// <summary>Returns this spec with another resize mode.</summary>
    /// <param name="mode">The resize mode.</param>
    public InputSpec WithResizeMode(ResizeMode mode) =>
        new(Width, Height, RangeMin, RangeMax, ChannelOrder, Mean, Std, mode);

    /// <inheritdoc />
    public bool Equals(InputSpec? other) =>
        other is not null && Width == other.Width && Height == other.Height && RangeMin == other.RangeMin &&
        RangeMax == other.RangeMax && ChannelOrder == other.ChannelOrder && ResizeMode == other.ResizeMode &&
        Mean.SequenceEqual(other.Mean) && Std.SequenceEqual(other.Std);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Width, Height, RangeMin, RangeMax, ChannelOrder, ResizeMode);
}
