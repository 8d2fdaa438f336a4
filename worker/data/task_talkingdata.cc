// talkingdata-ctr (see worker/data/task.h).
#include <algorithm>
#include <vector>

#include "worker/data/internal/parse_util.h"
#include "worker/data/internal/task_util.h"
#include "worker/data/raw_readers.h"

namespace freshet {
namespace internal {

StatusOr<TaskOutput> BuildTalkingDataCtr(const std::vector<std::string>& inputs,
                                         const std::string& out_dir,
                                         const BadRecordPolicy& policy) {
  TaskInfo info;
  info.Add("task", "talkingdata-ctr");
  TaskOutput output;

  std::vector<TalkingDataClick> clicks;
  {
    FRESHET_ASSIGN_OR_RETURN(auto reader, TalkingDataReader::OpenFiles(inputs, policy));
    TalkingDataClick c;
    while (true) {
      FRESHET_ASSIGN_OR_RETURN(bool more, reader->Next(&c));
      if (!more) break;
      clicks.push_back(c);
    }
    info.AddReadStats(reader->file_stats(), &output.bad_records);
  }
  std::stable_sort(clicks.begin(), clicks.end(),
                   [](const TalkingDataClick& a, const TalkingDataClick& b) {
                     return a.click_time < b.click_time;
                   });
  std::vector<int64_t> times;
  times.reserve(clicks.size());
  for (const TalkingDataClick& c : clicks) times.push_back(c.click_time);
  const int64_t split = TimeSplitBoundary(times, 0.8);
  info.Add("split", "time split at 80% of examples: holdout = click_time >= " + FormatTime(split));

  const std::vector<std::string> columns = TaskColumnNames("talkingdata-ctr");
  FRESHET_ASSIGN_OR_RETURN(auto writer, SplitWriter::Open(out_dir, columns));
  Example ex;
  ex.values.resize(columns.size());
  for (const TalkingDataClick& c : clicks) {
    ex.label = static_cast<float>(c.is_attributed);
    ex.time = c.click_time;
    ex.user = std::to_string(c.ip);
    // ip, app, device, os, channel, hour, app_x_channel, os_x_device
    ex.values[0] = ex.user;
    ex.values[1] = std::to_string(c.app);
    ex.values[2] = std::to_string(c.device);
    ex.values[3] = std::to_string(c.os);
    ex.values[4] = std::to_string(c.channel);
    ex.values[5] = std::to_string(ToCivil(c.click_time).hour);
    ex.values[6] = ex.values[1] + "_" + ex.values[4];
    ex.values[7] = ex.values[3] + "_" + ex.values[2];
    FRESHET_RETURN_IF_ERROR(writer->Write(ex, c.click_time >= split));
  }
  FRESHET_RETURN_IF_ERROR(writer->Close(&output));
  info.AddOutput(output);
  FRESHET_RETURN_IF_ERROR(info.Write(out_dir));
  return output;
}

}  // namespace internal
}  // namespace freshet
