// CIRR as an Apache Flink job: a KeyedProcessFunction per session that keeps
// the session's events (de-duplicated by event_id) in keyed state and, when
// the input ends, walks its change points in time order.
//
// usage: java -cp <pyflink/lib/*>:<classes> CirrJob EVENTS.csv OUT.csv PARALLELISM

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.connector.file.src.FileSource;
import org.apache.flink.connector.file.src.reader.TextLineInputFormat;
import org.apache.flink.core.fs.Path;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.Collector;

public class CirrJob {
    /** One CSV line: session_id,time,event_id,cdnChange,playerStateChange,userAction,bitrate */
    public static class Ev {
        public String session;
        public long time;
        public String id;
        public String cdn;
        public String state;
        public String action;

        public Ev() {}

        static Ev parse(String line) {
            String[] f = line.split(",", -1);
            Ev e = new Ev();
            e.session = f[0];
            e.time = Long.parseLong(f[1]);
            e.id = f[2];
            e.cdn = f[3].isEmpty() ? null : f[3];
            e.state = f[4].isEmpty() ? null : f[4];
            e.action = f[5].isEmpty() ? null : f[5];
            return e;
        }
    }

    public static class Cirr extends KeyedProcessFunction<String, Ev, Tuple2<String, Long>> {
        private transient MapState<String, Ev> events;

        @Override
        public void open(OpenContext context) {
            events = getRuntimeContext().getMapState(new MapStateDescriptor<>("events", Types.STRING, Types.POJO(Ev.class)));
        }

        @Override
        public void processElement(Ev e, Context ctx, Collector<Tuple2<String, Long>> out) throws Exception {
            if (!events.contains(e.id)) {
                if (events.isEmpty()) ctx.timerService().registerEventTimeTimer(Long.MAX_VALUE - 1);
                events.put(e.id, e);
            }
        }

        @Override
        public void onTimer(long timestamp, OnTimerContext ctx, Collector<Tuple2<String, Long>> out) throws Exception {
            List<Ev> list = new ArrayList<>();
            for (Map.Entry<String, Ev> entry : events.entries()) list.add(entry.getValue());
            // Time order; at equal times the greatest event_id comes last and wins.
            list.sort(Comparator.comparingLong((Ev e) -> e.time).thenComparing(e -> e.id));
            long latest = list.get(list.size() - 1).time;
            // Change points: every event time, and 5 s after every seek.
            TreeMap<Long, List<Ev>> points = new TreeMap<>();
            for (Ev e : list) {
                points.computeIfAbsent(e.time, t -> new ArrayList<>()).add(e);
                if ("seek".equals(e.action)) points.computeIfAbsent(e.time + 5000, t -> new ArrayList<>());
            }
            String state = null, cdn = null;
            boolean played = false;
            long lastSeek = Long.MIN_VALUE;
            long total = 0;
            Long previous = null;
            boolean counting = false;
            for (Map.Entry<Long, List<Ev>> point : points.entrySet()) {
                long t = point.getKey();
                if (previous != null && counting) total += Math.min(t, latest) - previous;
                if (t >= latest) break;
                for (Ev e : point.getValue()) {
                    if (e.state != null) state = e.state;
                    if (e.cdn != null) cdn = e.cdn;
                    if ("play".equals(e.state)) played = true;
                    if ("seek".equals(e.action)) lastSeek = e.time;
                }
                boolean seeking = lastSeek != Long.MIN_VALUE && t < lastSeek + 5000;
                counting = played && !seeking && "buffer".equals(state) && "CDN1".equals(cdn);
                previous = t;
            }
            out.collect(Tuple2.of(ctx.getCurrentKey(), total));
            events.clear();
        }
    }

    public static void main(String[] args) throws Exception {
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setRuntimeMode(RuntimeExecutionMode.BATCH);
        env.setParallelism(Integer.parseInt(args.length > 2 ? args[2] : "2"));
        FileSource<String> source = FileSource.forRecordStreamFormat(new TextLineInputFormat(), new Path(args[0])).build();
        DataStream<Tuple2<String, Long>> result = env
            .fromSource(source, WatermarkStrategy.noWatermarks(), "events")
            .filter(line -> !line.startsWith("session_id,"))
            .map(Ev::parse)
            .returns(Ev.class)
            .keyBy(e -> e.session)
            .process(new Cirr())
            .returns(Types.TUPLE(Types.STRING, Types.LONG));
        List<Tuple2<String, Long>> rows = new ArrayList<>();
        try (CloseableIterator<Tuple2<String, Long>> it = result.executeAndCollect("cirr")) {
            it.forEachRemaining(rows::add);
        }
        rows.sort(Comparator.comparing(r -> r.f0));
        try (PrintWriter w = new PrintWriter(args[1])) {
            w.println("key,value");
            for (Tuple2<String, Long> r : rows) w.println(r.f0 + "," + r.f1);
        }
    }
}
