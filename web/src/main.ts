// The dashboard: the federation's rounds as they close, read from the service's REST routes (served by
// `zerotrustml serve`) or from the hApp's DHT (packed as the hApp's UI), kept live by the source's events and
// a slow poll as a fallback.
import {
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartDataset,
} from "chart.js";
import { RestSource } from "./rest";
import "./style.css";
import { wantsDht, type RoundSummary, type Source } from "./types";

Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip);

const rounds = new Map<number, RoundSummary>();
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`no element #${id}`);
  return found as T;
}

function lineChart(id: string, yMax?: number): Chart<"line", (number | null)[], number> {
  return new Chart(el<HTMLCanvasElement>(id), {
    type: "line",
    data: { labels: [], datasets: [] },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      spanGaps: true,
      scales: { x: { title: { display: true, text: "round" } }, y: { min: 0, max: yMax } },
      plugins: { legend: { position: "bottom" } },
    },
  });
}

const charts = {
  accuracy: lineChart("accuracy", 1),
  detection: lineChart("detection", 1),
  reputation: lineChart("reputation"),
  latency: lineChart("latency"),
};

/** A number from the round's scoring (the run owner's evaluation first, then the service's own metrics). */
function value(r: RoundSummary, key: string): number | null {
  const v = r.evaluation?.[key] ?? r.metrics[key];
  return typeof v === "number" ? v : null;
}

function series(label: string, data: (number | null)[], colour: string, dashed = false): ChartDataset<"line", (number | null)[]> {
  return { label, data, borderColor: colour, backgroundColor: colour, pointRadius: 2, borderDash: dashed ? [6, 4] : [] };
}

function draw(): void {
  const list = [...rounds.values()].sort((a, b) => a.round - b.round);
  const labels = list.map((r) => r.round + 1);
  charts.accuracy.data.labels = labels;
  charts.accuracy.data.datasets = [
    series("accuracy", list.map((r) => value(r, "accuracy")), PALETTE[0]),
    series("honest-only", list.map((r) => value(r, "honest_only_accuracy")), "#555", true),
  ];
  charts.detection.data.labels = labels;
  charts.detection.data.datasets = [
    series("TPR", list.map((r) => value(r, "tpr")), PALETTE[2]),
    series("FPR", list.map((r) => value(r, "fpr")), PALETTE[1]),
  ];
  const nodes = [...new Set(list.flatMap((r) => [...Object.keys(r.reputation), ...r.kept, ...r.flagged, ...r.missing]))].sort();
  charts.reputation.data.labels = labels;
  charts.reputation.data.datasets = nodes.map((n, i) =>
    series(n, list.map((r) => r.reputation[n] ?? null), PALETTE[i % PALETTE.length]),
  );
  charts.latency.data.labels = labels;
  charts.latency.data.datasets = [
    series(
      "round",
      list.map((r) => value(r, "round_s") ?? ((value(r, "round_ms") ?? NaN) / 1000 || null)),
      PALETTE[4],
    ),
  ];
  Object.values(charts).forEach((c) => c.update());
  drawNodes(list, nodes);
  drawRounds(list);
  document.body.dataset.rounds = String(list.length);
}

function cell(row: HTMLTableRowElement, text: string, cls?: string): void {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
}

function drawNodes(list: RoundSummary[], nodes: string[]): void {
  const body = el<HTMLTableElement>("node-table").tBodies[0];
  body.replaceChildren();
  const last = list.at(-1);
  for (const n of nodes) {
    const row = body.insertRow();
    row.dataset.node = n;
    const state = !last ? "" : last.flagged.includes(n) ? "flagged" : last.missing.includes(n) ? "missing" : "kept";
    row.className = state;
    const times = list.filter((r) => r.flagged.includes(n)).length;
    const why = [...list].reverse().find((r) => r.reasons[n]?.length)?.reasons[n]?.join("; ") ?? "";
    const rep = last?.reputation[n];
    cell(row, n);
    cell(row, rep === undefined ? "–" : rep.toFixed(2));
    cell(row, state, "state");
    cell(row, String(times));
    cell(row, why);
  }
}

function drawRounds(list: RoundSummary[]): void {
  const body = el<HTMLTableElement>("round-table").tBodies[0];
  body.replaceChildren();
  for (const r of list.slice(-20).reverse()) {
    const row = body.insertRow();
    row.dataset.round = String(r.round);
    const acc = value(r, "accuracy");
    const ref = value(r, "honest_only_accuracy");
    cell(row, String(r.round + 1));
    cell(row, String(r.kept.length));
    cell(row, r.flagged.join(", "));
    cell(row, r.missing.join(", "));
    cell(row, acc === null ? "–" : acc.toFixed(3));
    cell(row, ref === null ? "–" : ref.toFixed(3));
  }
}

let refreshing = false;
let again = false;

async function refresh(): Promise<void> {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  try {
    const source = await sourceReady;
    const health = await source.health();
    el("federation").textContent = health.federation.slice(0, 12);
    el("round").textContent = health.finished ? "finished" : String((health.round ?? 0) + 1);
    el("nodes").textContent = String(health.nodes);
    el("rule").textContent = health.aggregator;
    el("admission").textContent = health.admission;
    // The last few rounds again: a run's own scoring of a round arrives just after the round closes.
    const known = [...rounds.keys()];
    const since = Math.max(0, (known.length ? Math.max(...known) : -1) - 4);
    for (const r of await source.rounds(since)) rounds.set(r.round, r);
    draw();
  } finally {
    refreshing = false;
    if (again) {
      again = false;
      void refresh();
    }
  }
}

/** The service's routes, unless this page runs as the hApp's UI (the DHT client loads only then). */
async function chooseSource(): Promise<Source> {
  if (!wantsDht()) return new RestSource();
  const { DhtSource } = await import("./dht");
  return new DhtSource();
}

const sourceReady = chooseSource();

void sourceReady.then((source) => {
  document.body.dataset.source = source.kind;
  source.listen(
    () => void refresh(),
    (state) => (el("live").textContent = state),
  );
});
void refresh();
setInterval(() => void refresh(), 3000);
