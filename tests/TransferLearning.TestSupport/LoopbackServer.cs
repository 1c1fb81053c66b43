using System.Net;
using System.Net.Sockets;

namespace TransferLearning.TestSupport;

/// <summary>
/// An HTTP server on 127.0.0.1 (free port). By default it serves the byte arrays given to <see cref="Add"/>, honouring
/// "Range: bytes=N-", and can fail, truncate or stall upcoming requests; or a test scripts every answer with a handler.
/// </summary>
public sealed class LoopbackServer : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Dictionary<string, byte[]> _files = [];
    private readonly Func<HttpListenerContext, int, Task>? _handler;
    private readonly Task _loop;
    private int _requests;

    /// <summary>Starts a server whose answers <paramref name="handler"/> writes (it gets the context and the 1-based request number).</summary>
    public LoopbackServer(Func<HttpListenerContext, int, Task> handler)
        : this() => _handler = handler;

    /// <summary>Starts a server for the files given to <see cref="Add"/>.</summary>
    public LoopbackServer()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        BaseUrl = $"http://127.0.0.1:{port}/";
        _listener.Prefixes.Add(BaseUrl);
        _listener.Start();
        _loop = Task.Run(LoopAsync);
    }

    public string BaseUrl { get; }

    public int Requests => Volatile.Read(ref _requests);

    /// <summary>Number of upcoming requests answered with 503.</summary>
    public int FailNext { get; set; }

    /// <summary>Number of upcoming requests that send only half of the body (with the full Content-Length) and drop the connection.</summary>
    public int TruncateNext { get; set; }

    /// <summary>Number of upcoming requests that send half of the body, then go silent for 5 s before dropping the connection.</summary>
    public int StallNext { get; set; }

    /// <summary>The Range header of each request, in arrival order (null when absent).</summary>
    public List<string?> RangeHeaders { get; } = [];

    /// <summary>Delay between body chunks (for cancellation/concurrency tests).</summary>
    public TimeSpan ChunkDelay { get; set; }

    /// <summary>The URL of a path on this server.</summary>
    public Uri UrlOf(string path) => new(BaseUrl + path);

    /// <summary>Serves <paramref name="body"/>, honouring "Range: bytes=N-"; with <paramref name="dropAfter"/>, drops the connection after that many bytes.</summary>
    public static async Task ServeAsync(HttpListenerContext ctx, byte[] body, int? dropAfter = null)
    {
        var start = HttpRange.Begin(ctx, body.Length);
        if (dropAfter is { } drop)
        {
            await ctx.Response.OutputStream.WriteAsync(body.AsMemory(start, drop));
            await ctx.Response.OutputStream.FlushAsync();
            ctx.Response.Abort();
            return;
        }

        await ctx.Response.OutputStream.WriteAsync(body.AsMemory(start));
        ctx.Response.Close();
    }

    public Uri Add(string path, byte[] content)
    {
        lock (_files)
        {
            _files[path] = content;
        }

        return new Uri(BaseUrl + path);
    }

    private async Task LoopAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext ctx;
            try
            {
                ctx = await _listener.GetContextAsync();
            }
            catch (Exception)
            {
                return;
            }

            _ = Task.Run(() => ServeAsync(ctx));
        }
    }

    private async Task ServeAsync(HttpListenerContext ctx)
    {
        var n = Interlocked.Increment(ref _requests);
        lock (RangeHeaders)
        {
            RangeHeaders.Add(ctx.Request.Headers["Range"]);
        }

        try
        {
            if (_handler is not null)
            {
                await _handler(ctx, n);
                return;
            }

            byte[]? body;
            lock (_files)
            {
                _files.TryGetValue(ctx.Request.Url!.AbsolutePath.TrimStart('/'), out body);
            }

            if (FailNext > 0)
            {
                FailNext--;
                ctx.Response.StatusCode = 503;
                ctx.Response.Close();
                return;
            }

            if (body is null)
            {
                ctx.Response.StatusCode = 404;
                ctx.Response.Close();
                return;
            }

            var start = HttpRange.Begin(ctx, body.Length);
            var truncate = TruncateNext > 0;
            if (truncate)
            {
                TruncateNext--;
            }

            var stall = !truncate && StallNext > 0;
            if (stall)
            {
                StallNext--;
            }

            var end = truncate || stall ? start + ((body.Length - start) / 2) : body.Length;
            for (var offset = start; offset < end; offset += 4096)
            {
                await ctx.Response.OutputStream.WriteAsync(body.AsMemory(offset, Math.Min(4096, end - offset)));
                if (ChunkDelay > TimeSpan.Zero)
                {
                    await Task.Delay(ChunkDelay);
                }
            }

            if (stall)
            {
                await ctx.Response.OutputStream.FlushAsync();
                await Task.Delay(TimeSpan.FromSeconds(5));
            }

            if (truncate || stall)
            {
                ctx.Response.Abort();
                return;
            }

            ctx.Response.Close();
        }
        catch (Exception)
        {
            try
            {
                ctx.Response.Abort();
            }
            catch (Exception)
            {
            }
        }
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        try
        {
            _loop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
    }
}
