using System.Net;
using System.Net.Sockets;

namespace TransferLearning.Core.Tests.Hub;

/// <summary>An HTTP server on 127.0.0.1 (free port) serving byte arrays; can fail the first requests.</summary>
internal sealed class LoopbackServer : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Dictionary<string, byte[]> _files = [];
    private readonly Task _loop;
    private int _requests;

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
        Interlocked.Increment(ref _requests);
        lock (RangeHeaders)
        {
            RangeHeaders.Add(ctx.Request.Headers["Range"]);
        }

        try
        {
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

            var start = TransferLearning.Tests.HttpRange.Begin(ctx, body.Length);
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
