using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
    /// <exception cref="ArgumentOutOfRangeException">The window is not inside the source, or a size does not fit its buffer (the AVX2 path reads by index without bounds checks, so this is checked first).</exception>
    public static void Resize(ReadOnlySpan<byte> src, int srcW, int x0, int y0, int cropW, int cropH, Span<byte> dst, int dstW, int dstH)
    {
        if (srcW < 1 || x0 < 0 || y0 < 0 || cropW < 1 || cropH < 1 || x0 + cropW > srcW || (long)(y0 + cropH) * srcW * 3 > src.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(src), $"The window {cropW}×{cropH} at ({x0}, {y0}) is not inside a source of {srcW} pixels per row and {src.Length} bytes.");
        }

        if (dstW < 1 || dstH < 1 || (long)dstW * dstH * 3 > dst.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(dst), $"{dstW}×{dstH} RGB pixels do not fit {dst.Length} bytes.");
        }

        var width = dstW * 3;
        var stride = srcW * 3;
        var pool = ArrayPool<float>.Shared.Rent((4 * width) + stride);
        var indices = ArrayPool<int>.Shared.Rent(2 * width);
        try
        {
            // Per output value (pixel x, channel c): the source values on its left and right and the weight of the right one.
            var left = indices.AsSpan(0, width);
            var right = indices.AsSpan(width, width);
            var weights = pool.AsSpan(3 * width, width);
            Weights(cropW, dstW, x0, left, right, weights);
            var upper = pool.AsSpan(0, width);
            var lower = pool.AsSpan(width, width);
            var mixed = pool.AsSpan(2 * width, width);
            var wide = pool.AsSpan(4 * width, stride);
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
                        Across(src.Slice(top * stride, stride), wide, left, right, weights, upper);
                        upperRow = top;
                    }
                }

                if (bottom != lowerRow)
                {
                    Across(src.Slice(bottom * stride, stride), wide, left, right, weights, lower);
                    lowerRow = bottom;
                }

                Between(upper, lower, ly, mixed);
                Round(mixed, dst.Slice(y * width, width));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(pool);
            ArrayPool<int>.Shared.Return(indices);
        }
    }

    /// <summary>
    /// One source row interpolated at the output columns: <c>a + (b - a) · fx</c> per value. With AVX2 the row is
    /// widened to floats once and eight values at a time are gathered from it; the arithmetic is the same.
    /// </summary>
    private static unsafe void Across(ReadOnlySpan<byte> row, Span<float> wide, ReadOnlySpan<int> left, ReadOnlySpan<int> right, ReadOnlySpan<float> weights, Span<float> result)
    {
        var i = 0;
        if (Avx2.IsSupported && result.Length >= Vector256<float>.Count)
        {
            var j = 0;
            fixed (byte* bytes = row)
            {
                for (; j <= row.Length - Vector256<int>.Count; j += Vector256<int>.Count)
                {
                    var values = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(bytes + j));
                    values.StoreUnsafe(ref wide[j]);
                }
            }

            for (; j < row.Length; j++)
            {
                wide[j] = row[j];
            }

            fixed (float* w = wide)
            fixed (int* l = left, r = right)
            {
                for (; i <= result.Length - Vector256<float>.Count; i += Vector256<float>.Count)
                {
                    var a = Avx2.GatherVector256(w, Avx.LoadVector256(l + i), sizeof(float));
                    var b = Avx2.GatherVector256(w, Avx.LoadVector256(r + i), sizeof(float));
                    var f = Vector256.LoadUnsafe(ref Unsafe.AsRef(in weights[i]));
                    (a + ((b - a) * f)).StoreUnsafe(ref result[i]);
                }
            }
        }

        for (; i < result.Length; i++)
        {
            float a = row[left[i]], b = row[right[i]];
            result[i] = a + ((b - a) * weights[i]);
        }
    }

    /// <summary>Rounds interpolated values (0 to 255) to the nearest byte, halves up: <c>(byte)(v + 0.5f)</c>.</summary>
    private static void Round(ReadOnlySpan<float> values, Span<byte> result)
    {
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var half = Vector256.Create(0.5f);
            const int Step = 4 * 8;
            for (; i <= values.Length - Step; i += Step)
            {
                var v0 = Vector256.ConvertToInt32(Vector256.LoadUnsafe(ref Unsafe.AsRef(in values[i])) + half);
                var v1 = Vector256.ConvertToInt32(Vector256.LoadUnsafe(ref Unsafe.AsRef(in values[i + 8])) + half);
                var v2 = Vector256.ConvertToInt32(Vector256.LoadUnsafe(ref Unsafe.AsRef(in values[i + 16])) + half);
                var v3 = Vector256.ConvertToInt32(Vector256.LoadUnsafe(ref Unsafe.AsRef(in values[i + 24])) + half);
                var shorts0 = Vector256.Narrow(v0, v1);
                var shorts1 = Vector256.Narrow(v2, v3);
                Vector256.Narrow(shorts0.AsUInt16(), shorts1.AsUInt16()).StoreUnsafe(ref result[i]);
            }
        }

        for (; i < values.Length; i++)
        {
            result[i] = (byte)(values[i] + 0.5f);
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

    /// <summary>For output value i (pixel i / 3, channel i % 3): the indices of its left and right source values in a packed row, and the right one's weight.</summary>
    private static void Weights(int inSize, int outSize, int offset, Span<int> left, Span<int> right, Span<float> frac)
    {
        var scale = (double)inSize / outSize;
        for (var i = 0; i < outSize; i++)
        {
            var pos = ((i + 0.5) * scale) - 0.5;
            var f = Math.Floor(pos);
            var lower = offset + Math.Max((int)f, 0);
            var upper = offset + Math.Min((int)Math.Ceiling(pos), inSize - 1);
            for (var c = 0; c < 3; c++)
            {
                left[(3 * i) + c] = (3 * lower) + c;
                right[(3 * i) + c] = (3 * upper) + c;
                frac[(3 * i) + c] = (float)(pos - f);
            }
        }
    }
}
