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

            ctx.Response.ContentLength64 = body.Length;
            var truncate = TruncateNext > 0;
            if (truncate)
            {
                TruncateNext--;
            }

            var send = truncate ? body.Length / 2 : body.Length;
            for (var offset = 0; offset < send; offset += 4096)
            {
                await ctx.Response.OutputStream.WriteAsync(body.AsMemory(offset, Math.Min(4096, send - offset)));
                if (ChunkDelay > TimeSpan.Zero)
                {
                    await Task.Delay(ChunkDelay);
                }
            }

            if (truncate)
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
