// Live stats charts in uPlot.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export type Series = { label: string; unit: string };

export function makeChart(el: HTMLElement, title: string, series: Series[]) {
  const data: number[][] = [[], ...series.map(() => [])];
  const width = () => Math.max(280, Math.min(el.clientWidth || 600, 900));
  const plot = new uPlot(
    {
      title,
      width: width(),
      height: 200,
      series: [
        {},
        ...series.map((s, i) => ({
          label: `${s.label} (${s.unit})`,
          stroke: ["#1f5fbf", "#c2410c", "#15803d"][i % 3],
          width: 2,
        })),
      ],
      axes: [{}, { size: 60 }],
    },
    data as uPlot.AlignedData,
    el,
  );
  const resize = () => plot.setSize({ width: width(), height: 200 });
  window.addEventListener("resize", resize);
  return {
    push(t: number, values: number[]) {
      data[0].push(t);
      values.forEach((v, i) => data[i + 1].push(v));
      if (data[0].length > 120) for (const d of data) d.shift();
      plot.setData(data as uPlot.AlignedData);
    },
    destroy() {
      window.removeEventListener("resize", resize);
      plot.destroy();
    },
  };
}
