using System.Globalization;
using System.Net;

namespace TransferLearning.TestSupport;

/// <summary>Range support for the loopback test servers .</summary>
public static class HttpRange
{
    /// <summary>
    /// Honours "Range: bytes=N-" like a static file server: sets 206, Content-Range and Content-Length for a body of
    /// <paramref name="length"/> bytes and returns where to start sending (0 without a Range header).
    /// </summary>
    public static int Begin(HttpListenerContext ctx, int length)
    {
        var start = 0;
        var range = ctx.Request.Headers["Range"];
        if (range is not null && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            start = int.Parse(range[6..^1], CultureInfo.InvariantCulture);
            ctx.Response.StatusCode = 206;
            ctx.Response.Headers["Content-Range"] = $"bytes {start}-{length - 1}/{length}";
        }

        ctx.Response.ContentLength64 = length - start;
        return start;
    }
}
