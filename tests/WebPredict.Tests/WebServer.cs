using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace WebPredict.Tests;

/// <summary>The WebPredict app on real Kestrel at http://127.0.0.1:(free port), with an HttpClient pointed at it.</summary>
public sealed class WebServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private WebServer(WebApplication app, Uri address)
    {
        _app = app;
        Address = address;
        Client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(60) };
    }

    public static string Model => RepoPaths.TestData("inference", "flowers_stretch.onnx");

    public Uri Address { get; }

    public HttpClient Client { get; }

    /// <summary>Starts the app with the fixture model, port 0 and quiet logging, plus <paramref name="args"/>.</summary>
    public static async Task<WebServer> StartAsync(params string[] args)
    {
        var app = Program.CreateApp(
        [
            "--urls=http://127.0.0.1:0",
            $"--Model:Path={Model}",
            "--Logging:LogLevel:Default=Warning",
            .. args,
        ]);
        try
        {
            await app.StartAsync();
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
            return new WebServer(app, new Uri(addresses.Single()));
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
