// Program - hotpath-kestrel's command line and host: Kestrel only (the
// slim builder: no HTTPS, no IIS integration, no host filtering), logging
// off, our own Server header, and one RequestDelegate (Twin.Invoke).
//
// The command line is hotpath's (--config, --mode, --port, --workers,
// --help) so the same scripts drive both; it prints one line once listening,
// "hotpath-kestrel listening on http://HOST:PORT (...)", from which scripts
// and tests read the bound port (--port 0: an ephemeral one). Signals as
// hotpath's: SIGHUP re-reads the config file (Twin.Reload), SIGINT/SIGTERM
// stop accepting, let running requests finish, and exit 0.
using System.Net;
using System.Runtime;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace HotpathKestrel;

public static class Program
{
    private const string Usage =
        """
        usage: hotpath-kestrel [--config FILE] [--mode MODE] [--port N] [--workers N]

        hotpath's contract on ASP.NET Core (Kestrel): the Task<T> vs ValueTask<T>
        decision measured on the runtime it is about.

          --config FILE   hotpath's JSON configuration (default: none, the defaults)
          --mode M        how the chain's layers return their result:
                            valuetask         async ValueTask<T>, pooling builder (default)
                            task              async Task<T>: a task per layer per request
                            valuetask-nopool  async ValueTask<T>, default builder
                            aspnet            middleware, Task InvokeAsync(HttpContext)
          --port N        listen port (0: ephemeral; the bound port is printed)
          --workers N     accepted for hotpath's command line, ignored: Kestrel
                          sizes its own socket queues (pin the process to cores)
          --help          this text

        Flags override the file, also across reloads. Signals: SIGHUP re-reads the
        file and applies "mode" live (a bad file is refused and the running
        configuration stays); SIGINT/SIGTERM stop accepting, finish running
        requests, and exit 0.

        Configuration keys read (any other key of hotpath's file is ignored):
          listen.host, listen.port         127.0.0.1, 8080
          mode                             valuetask
          upstream.host, upstream.port     127.0.0.1, 8081 (the stub)
          upstream.pool_size               64 keep-alive connections
          upstream.connect_timeout_ms      1000
          upstream.response_timeout_ms     5000
          upstream.max_response_bytes      8388608
          cache.ttl_ms, cache.max_bytes    30000, 67108864

        Routes: GET/HEAD /plaintext, /json, /cache/{key}, /upstream/{path}, /stats.
        Environment: DOTNET_gcServer=0 selects workstation GC (default: server GC).
        """;

    public static int Main(string[] args)
    {
        string? configPath = null;
        Mode? modeFlag = null;
        int? portFlag = null;
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string? Value()
            {
                if (i + 1 < args.Length) return args[++i];
                Console.Error.WriteLine($"hotpath-kestrel: {a}: expected a value");
                return null;
            }
            switch (a)
            {
                case "--help" or "-h":
                    Console.Out.Write(Usage + "\n");
                    return 0;
                case "--config":
                    if ((configPath = Value()) == null) return 2;
                    break;
                case "--mode":
                    if (!Modes.TryParse(Value(), out Mode m))
                    {
                        Console.Error.WriteLine($"hotpath-kestrel: --mode: {Modes.Expected}");
                        return 2;
                    }
                    modeFlag = m;
                    break;
                case "--port" or "--workers":
                    if (!int.TryParse(Value(), out int n) || n < 0 || n > (a == "--port" ? 65535 : 1024))
                    {
                        Console.Error.WriteLine($"hotpath-kestrel: {a}: expected an integer from 0 to {(a == "--port" ? 65535 : 1024)}");
                        return 2;
                    }
                    if (a == "--port") portFlag = n;
                    break;
                default:
                    Console.Error.WriteLine($"hotpath-kestrel: unknown argument \"{a}\" (try --help)");
                    return 2;
            }
        }

        Config cfg = new();
        if (configPath != null)
        {
            Config? loaded = Config.Load(configPath, out string error);
            if (loaded == null)
            {
                Console.Error.WriteLine($"hotpath-kestrel: {error}");
                return 1;
            }
            cfg = loaded;
        }
        if (portFlag is int port) cfg = cfg with { Port = port };
        return Serve(cfg, configPath, modeFlag);
    }

    private static int Serve(Config cfg, string? configPath, Mode? modeFlag)
    {
        using var twin = new Twin(cfg, configPath, modeFlag);

        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [],
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.ClearProviders();
        builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);
        // 5 s, as hotpath's limits.drain_timeout_ms.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        builder.WebHost.ConfigureKestrel(o =>
        {
            o.AddServerHeader = false; // the server_headers layer sets it
            o.Listen(IPAddress.Parse(cfg.Host), cfg.Port);
        });
        WebApplication app = builder.Build();

        // aspnet mode's pipeline, built the way an application builds one.
        IApplicationBuilder aspnet = ((IApplicationBuilder)app).New();
        aspnet.UseMiddleware<ServerHeadersMiddleware>();
        aspnet.UseMiddleware<RequestIdMiddleware>();
        aspnet.UseMiddleware<MetricsMiddleware>(twin.Stats);
        aspnet.Run(new AspNetHandler(twin).InvokeAsync);
        twin.SetAspNetPipeline(aspnet.Build());

        ((IApplicationBuilder)app).Run(twin.Invoke);

        // Before the "listening" line: a supervisor may send SIGHUP as soon as
        // it reads it, and SIGHUP's default action is to exit.
        using PosixSignalRegistration hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, ctx =>
        {
            ctx.Cancel = true;
            twin.Reload();
        });

        try
        {
            app.Start();
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"hotpath-kestrel: cannot listen on {cfg.Host}:{cfg.Port}: {e.Message}");
            return 1;
        }
        string address = app.Services.GetRequiredService<IServer>().Features
                            .Get<IServerAddressesFeature>()!.Addresses.First();
        Console.Out.WriteLine(
            $"hotpath-kestrel listening on {address} (mode {twin.Mode.Name()}, config {configPath ?? "(defaults)"}, " +
            $"{(GCSettings.IsServerGC ? "server" : "workstation")} GC, {RuntimeInformation.FrameworkDescription})");
        Console.Out.Flush();

        app.WaitForShutdown();
        Console.Error.WriteLine("hotpath-kestrel: stopped");
        return 0;
    }
}
