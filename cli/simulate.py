"""`urbansense simulate`: play the registry's LoRaWAN devices to the broker as ChirpStack would."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from cli.state import state
from cli.tables import plain
from core.database import holds_nothing
from core.districts import matching_districts, no_match_note
from core.secrets import reveal
from provisioning.registry import Registry
from sim.nbiot import TRANSPORTS, run_nbiot
from sim.simulator import SCENARIOS, FleetSimulator, Publisher, Scenario, run_simulation

console = Console()


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(ctx: typer.Context,
                 scenario: Annotated[str, typer.Option(help=f"one of {', '.join(SCENARIOS)}")] = "calm",
                 rate: Annotated[float, typer.Option(help="uplinks per second, whole fleet")] = 20.0,
                 duration: Annotated[float, typer.Option(help="seconds to run")] = 60.0,
                 storm_district: Annotated[list[str] | None, typer.Option(
                     help="district that floods in the rainstorm, its name or part of it (repeatable; "
                          "default: the first)")] = None,
                 ramp: Annotated[float, typer.Option(help="rainstorm: seconds for water to reach its peak")] = 300,
                 seed: Annotated[int, typer.Option(help="random seed")] = 1,
                 transport: Annotated[str, typer.Option(
                     help="lorawan (ChirpStack over MQTT), nbiot-udp (frames to nbiot.udp_port) or ctwing "
                          "(CTWing pushes to nbiot.push_port)")] = "lorawan") -> None:
        """Play the registry's devices: LoRaWAN uplinks via the broker, or NB-IoT frames over UDP / CTWing push.

        Example: [bold]urbansense simulate --scenario rainstorm --rate 50 --duration 120 --storm-district 朝阳[/bold]
        Example: [bold]urbansense simulate --transport nbiot-udp --rate 20 --duration 60[/bold]
        """
        if scenario not in SCENARIOS:
            console.print(f"[red]error:[/red] --scenario: {scenario!r} is not one of {', '.join(SCENARIOS)}")
            raise typer.Exit(2)
        if rate <= 0:
            console.print("[red]error:[/red] --rate: expected a positive number of uplinks per second")
            raise typer.Exit(2)
        cfg = state(ctx).config
        with Registry(where := cfg.registry_database(), migrate_schema=holds_nothing(where, "devices")) as reg:
            devices = reg.all()
        known = [d.district for d in devices if d.kind == "water_level"]
        districts = tuple(sorted(set(known))[:1])
        if storm_district:
            districts = tuple(n for q in storm_district for n in matching_districts(q, known))
            for q in storm_district:
                if not matching_districts(q, known):
                    Console(stderr=True, soft_wrap=True).print(
                        f"[yellow]note:[/yellow] {plain(no_match_note(q, known, what='water gauges'))}",
                        highlight=False)
        if transport != "lorawan":
            if transport not in TRANSPORTS:
                console.print(f"[red]error:[/red] --transport: {transport!r} is not one of lorawan, "
                              f"{', '.join(TRANSPORTS)}")
                raise typer.Exit(2)
            code, message = run_nbiot(cfg, devices, Scenario(scenario, districts, ramp), transport=transport,
                                      rate=rate, duration_s=duration, seed=seed)
            console.print(message)
            raise typer.Exit(code)
        sim = FleetSimulator(devices, Scenario(scenario, districts, ramp), seed=seed)
        if not sim.devices:
            console.print("[red]error:[/red] the registry has no LoRaWAN devices to simulate "
                          "(add some with `urbansense device add`)")
            raise typer.Exit(1)
        try:
            pub = Publisher(cfg.mqtt.host, cfg.mqtt.port, username=cfg.mqtt.username or None,
                            password=reveal(cfg.mqtt.password) or None, tls=cfg.mqtt_tls())
        except ConnectionError as exc:  # a person is waiting: the reason, not a traceback
            Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {plain(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
        console.print(f"simulating {len(sim.devices)} devices, scenario {scenario}, {rate}/s for {duration}s")
        try:
            sent = run_simulation(sim, pub, rate=rate, duration_s=duration)
        except KeyboardInterrupt:
            sent = pub.published
        finally:
            pub.close()
        console.print(f"published {sent} uplinks")
