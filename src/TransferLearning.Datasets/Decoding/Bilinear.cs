using System.Buffers;
using System.Numerics;

namespace TransferLearning.Datasets.Decoding;

/// <summary>
/// Bilinear resampling of packed 8-bit RGB with half-pixel centres and no antialiasing: the arithmetic of
/// <c>tf.image.resize(method="bilinear")</c> (TF 2 default), rounded back to 8 bits.
/// </summary>
internal static class Bilinear
{
    /// <summary>
    /// Resizes the window [x0, x0 + cropW) × [y0, y0 + cropH) of a packed RGB image to <paramref name="dstW"/> × <paramref name="dstH"/>.
    /// </summary>
    /// <remarks>
    /// Separable: each source row that an output row reads is interpolated across once (kept while the next output row
    /// reads it too), then output rows are interpolated between two such rows, several values at a time. Every value
    /// goes through the same float operations as interpolating the four neighbours directly — top and bottom across,
    /// then between them — so the bytes are the same.
    /// </remarks>
    public static void Resize(ReadOnlySpan<byte> src, int srcW, int x0, int y0, int cropW, int cropH, Span<byte> dst, int dstW, int dstH)
    {
        var width = dstW * 3;
        var pool = ArrayPool<float>.Shared.Rent(3 * width);
        var indices = ArrayPool<int>.Shared.Rent(2 * dstW);
        var fractions = ArrayPool<float>.Shared.Rent(dstW);
        try
        {
            var xl = indices.AsSpan(0, dstW);
            var xu = indices.AsSpan(dstW, dstW);
            var xf = fractions.AsSpan(0, dstW);
            Weights(cropW, dstW, x0, xl, xu, xf);
            var stride = srcW * 3;
            var upper = pool.AsSpan(0, width);
            var lower = pool.AsSpan(width, width);
            var mixed = pool.AsSpan(2 * width, width);
            int upperRow = -1, lowerRow = -1;
            var sy = (double)cropH / dstH;
            for (var y = 0; y < dstH; y++)
            {
                var iny = ((y + 0.5) * sy) - 0.5;
                var fy = Math.Floor(iny);
                var ly = (float)(iny - fy);
                var top = y0 + Math.Max((int)fy, 0);
                var bottom = y0 + Math.Min((int)Math.Ceiling(iny), cropH - 1);
                if (top != upperRow)
                {
                    if (top == lowerRow)
                    {
                        var swap = upper;
                        upper = lower;
                        lower = swap;
                        (upperRow, lowerRow) = (lowerRow, upperRow);
                    }
                    else
                    {
                        Across(src.Slice(top * stride, stride), xl, xu, xf, upper);
                        upperRow = top;
                    }
                }

                if (bottom != lowerRow)
                {
                    Across(src.Slice(bottom * stride, stride), xl, xu, xf, lower);
                    lowerRow = bottom;
                }

                Between(upper, lower, ly, mixed);
                var outRow = dst.Slice(y * width, width);
                for (var i = 0; i < width; i++)
                {
                    outRow[i] = (byte)(mixed[i] + 0.5f);
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(pool);
            ArrayPool<int>.Shared.Return(indices);
            ArrayPool<float>.Shared.Return(fractions);
        }
    }

    /// <summary>One source row interpolated at the output columns: <c>a + (b - a) · fx</c> per channel.</summary>
    private static void Across(ReadOnlySpan<byte> row, ReadOnlySpan<int> xl, ReadOnlySpan<int> xu, ReadOnlySpan<float> xf, Span<float> result)
    {
        for (var x = 0; x < xf.Length; x++)
        {
            int l = xl[x] * 3, u = xu[x] * 3, o = x * 3;
            var lx = xf[x];
            for (var c = 0; c < 3; c++)
            {
                float a = row[l + c], b = row[u + c];
                result[o + c] = a + ((b - a) * lx);
            }
        }
    }

    /// <summary><c>t + (b - t) · fy</c> for every value of two interpolated rows.</summary>
    private static void Between(ReadOnlySpan<float> top, ReadOnlySpan<float> bottom, float fy, Span<float> result)
    {
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var weight = new Vector<float>(fy);
            for (; i <= result.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var t = new Vector<float>(top[i..]);
                var b = new Vector<float>(bottom[i..]);
                (t + ((b - t) * weight)).CopyTo(result[i..]);
            }
        }

        for (; i < result.Length; i++)
        {
            result[i] = top[i] + ((bottom[i] - top[i]) * fy);
        }
    }

    private static void Weights(int inSize, int outSize, int offset, Span<int> lower, Span<int> upper, Span<float> frac)
    {
        var scale = (double)inSize / outSize;
        for (var i = 0; i < outSize; i++)
        {
            var pos = ((i + 0.5) * scale) - 0.5;
            var f = Math.Floor(pos);
            lower[i] = offset + Math.Max((int)f, 0);
            upper[i] = offset + Math.Min((int)Math.Ceiling(pos), inSize - 1);
            frac[i] = (float)(pos - f);
        }
    }
}
