import { formatClock, type Timeline, type TimelineMark } from '../lib/player';

const MARK_KINDS: Record<TimelineMark['kind'], string> = {
  command: 'Command',
  exec: 'Program',
  join: 'Join',
  resize: 'Resize',
  marker: 'Event',
  keys: 'Typing',
  click: 'Click',
  special: 'Key',
};

/** Ticks under the scrub bar (commands, joins, resizes, a desktop's typing and clicks); each jumps to its moment. */
export function Marks({
  marks,
  timeline,
  onSeek,
}: {
  marks: TimelineMark[];
  timeline: Timeline;
  onSeek: (t: number) => void;
}) {
  if (marks.length === 0) return null;
  const total = Math.max(1, timeline.duration);
  return (
    <div className="marks" data-testid="timeline-marks">
      {marks.map((m, i) => {
        const at = timeline.toPlay(m.t);
        const label = `${MARK_KINDS[m.kind]} at ${formatClock(at)}: ${m.label}`;
        return (
          <button
            // biome-ignore lint/suspicious/noArrayIndexKey: marks are fixed for a recording; two may share a time
            key={i}
            type="button"
            className={`mark mark-${m.kind}`}
            data-kind={m.kind}
            style={{ left: `${(at / total) * 100}%` }}
            title={label}
            aria-label={label}
            onClick={() => onSeek(m.t)}
          />
        );
      })}
    </div>
  );
}
