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
    public static void Resize(ReadOnlySpan<byte> src, int srcW, int x0, int y0, int cropW, int cropH, Span<byte> dst, int dstW, int dstH)
    {
        Span<int> xl = dstW <= 4096 ? stackalloc int[dstW] : new int[dstW];
        Span<int> xu = dstW <= 4096 ? stackalloc int[dstW] : new int[dstW];
        Span<float> xf = dstW <= 4096 ? stackalloc float[dstW] : new float[dstW];
        Weights(cropW, dstW, x0, xl, xu, xf);
        var stride = srcW * 3;
        var sx = (double)cropH / dstH;
        for (var y = 0; y < dstH; y++)
        {
            var iny = ((y + 0.5) * sx) - 0.5;
            var fy = Math.Floor(iny);
            var ly = (float)(iny - fy);
            var top = y0 + Math.Max((int)fy, 0);
            var bottom = y0 + Math.Min((int)Math.Ceiling(iny), cropH - 1);
            var rowT = src.Slice(top * stride, stride);
            var rowB = src.Slice(bottom * stride, stride);
            var outRow = dst.Slice(y * dstW * 3, dstW * 3);
            for (var x = 0; x < dstW; x++)
            {
                int l = xl[x] * 3, u = xu[x] * 3, o = x * 3;
                var lx = xf[x];
                for (var c = 0; c < 3; c++)
                {
                    float a = rowT[l + c], b = rowT[u + c], d = rowB[l + c], e = rowB[u + c];
                    var t = a + ((b - a) * lx);
                    var bt = d + ((e - d) * lx);
                    var v = t + ((bt - t) * ly);
                    outRow[o + c] = (byte)(v + 0.5f);
                }
            }
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
