#include "launchers/batch.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <regex>
#include <sstream>

namespace ipp::launchers {

namespace {
const std::vector<BatchSystem>& Systems() {
  static const std::vector<BatchSystem> systems = {
      {"Slurm", "#SBATCH ", "--partition=", "--account=", "--time=", {"sbatch"}, {"scancel"}, R"((?:Submitted batch job\s+)?(\d+))",
       "#!/bin/sh\n#SBATCH --job-name=ipp-engine-{cluster_id}\n#SBATCH --ntasks={n}\n"
       "#SBATCH --output={log_dir}/slurm-engine-%j.log\n{queue_line}{account_line}{walltime_line}{extra}\n"
       "{environment}srun --kill-on-bad-exit=0 {command}\n",
       "#!/bin/sh\n#SBATCH --job-name=ipp-controller-{cluster_id}\n#SBATCH --ntasks=1\n"
       "#SBATCH --output={log_dir}/slurm-controller-%j.log\n{queue_line}{account_line}{walltime_line}{extra}\n"
       "{environment}{command}\n",
       {"squeue", "-h", "-t", "all", "-o", "%i %T"}, R"(^\s*(\S+)\s+(\S+)\s*$)",
       {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"},
       {"RUNNING", "CONFIGURING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING"}},
      {"PBS", "#PBS ", "-q ", "-A ", "-l walltime=", {"qsub"}, {"qdel"}, R"(^(\d+[\w.\-\[\]]*))",
       "#!/bin/sh\n#PBS -V\n#PBS -N ipp-engine\n#PBS -t 1-{n}\n#PBS -j oe\n#PBS -o {log_dir}/\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n",
       "#!/bin/sh\n#PBS -V\n#PBS -N ipp-controller\n#PBS -j oe\n#PBS -o {log_dir}/\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n",
       {"qstat"}, R"(^(\d\S*)\s+\S+\s+\S+\s+\S+\s+([A-Z])\s+\S+\s*$)", {"Q", "H", "W", "T", "M"}, {"R", "E", "S", "B", "U"}},
      {"SGE", "#$ ", "-q ", "-A ", "-l walltime=", {"qsub", "-terse"}, {"qdel"}, R"(^(\d+))",
       "#$ -V\n#$ -S /bin/sh\n#$ -N ipp-engine\n#$ -t 1-{n}\n#$ -j y\n#$ -o {log_dir}\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n",
       "#$ -V\n#$ -S /bin/sh\n#$ -N ipp-controller\n#$ -j y\n#$ -o {log_dir}\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n",
       {"qstat"}, R"(^\s*(\d+)\s+\S+\s+\S+\s+\S+\s+(\S+)\s)", {"qw", "hqw", "hRwq", "Rq", "w"},
       {"r", "t", "Rr", "Rt", "s", "S", "T", "ts", "tS", "rs", "rS", "Rs", "RS"}},
      {"LSF", "#BSUB ", "-q ", "-P ", "-W ", {"bsub"}, {"bkill"}, R"(Job <(\d+)>)",
       "#!/bin/sh\n#BSUB -J ipp-engine[1-{n}]\n#BSUB -o {log_dir}/lsf-engine-%J.log\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n",
       "#!/bin/sh\n#BSUB -J ipp-controller\n#BSUB -o {log_dir}/lsf-controller-%J.log\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n",
       {}, "", {}, {}},
      {"HTCondor", "", "", "", "", {"condor_submit"}, {"condor_rm"}, R"(submitted to cluster (\d+))",
       "universe = vanilla\nexecutable = /bin/sh\narguments = \"-c '{command}'\"\n"
       "log = {log_dir}/condor-engine-$(Cluster).log\noutput = {log_dir}/condor-engine-$(Cluster).$(Process).out\n"
       "error = {log_dir}/condor-engine-$(Cluster).$(Process).err\ngetenv = true\n{environment}{extra}\nqueue {n}\n",
       "universe = vanilla\nexecutable = /bin/sh\narguments = \"-c '{command}'\"\n"
       "log = {log_dir}/condor-controller-$(Cluster).log\noutput = {log_dir}/condor-controller-$(Cluster).out\n"
       "error = {log_dir}/condor-controller-$(Cluster).err\ngetenv = true\n{environment}{extra}\nqueue 1\n",
       {}, "", {}, {}},
  };
  return systems;
}
}  // namespace

const BatchSystem* FindBatchSystem(const std::string& name) {
  for (const auto& s : Systems()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string NormalizeJobId(const std::string& id) {
  size_t digits = 0;
  while (digits < id.size() && std::isdigit(static_cast<unsigned char>(id[digits]))) ++digits;
  return digits > 0 ? id.substr(0, digits) : id;
}

Result<std::string> FillTemplate(const std::string& text, const Json& fields) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find('{', i);
    if (open == std::string::npos) {
      out.append(text, i, std::string::npos);
      break;
    }
    size_t close = text.find('}', open);
    if (close == std::string::npos) return Status::InvalidArgument("unclosed '{' in job template");
    out.append(text, i, open - i);
    std::string name = text.substr(open + 1, close - open - 1);
    auto it = fields.find(name);
    if (it == fields.end()) return Status::InvalidArgument("unknown field {" + name + "} in job template");
    out += it->is_string() ? it->get<std::string>() : it->dump();
    i = close + 1;
  }
  return out;
}

Json DirectiveLines(const BatchSystem& system, const Json& section) {
  auto line = [&](const char* key, const std::string& flag) {
    std::string value = section.value(key, std::string());
    return system.directive.empty() || value.empty() ? std::string() : system.directive + flag + value + "\n";
  };
  return {{"queue_line", line("queue", system.queue_flag)},
          {"account_line", line("account", system.account_flag)},
          {"walltime_line", line("walltime", system.walltime_flag)}};
}

std::string JobOutput(const BatchSystem& system, bool controller, const std::string& log_dir, const std::string& job_id) {
  const std::string role = controller ? "controller" : "engine";
  const std::string dir = log_dir + "/";
  // SGE and PBS name array jobs' files per task, after the job's name (ipp-engine).
  if (system.name == "Slurm") return dir + "slurm-" + role + "-" + job_id + ".log";
  if (system.name == "PBS") return dir + "ipp-" + role + ".o" + job_id + (controller ? "" : "*");
  if (system.name == "SGE") return dir + "ipp-" + role + ".o" + job_id + (controller ? "" : ".*");
  if (system.name == "LSF") return dir + "lsf-" + role + "-" + job_id + ".log";
  if (system.name == "HTCondor") return dir + "condor-" + role + "-" + job_id + (controller ? "" : ".*") + ".out";
  return log_dir;
}

Result<std::string> ParseJobId(const BatchSystem& system, const std::string& output) {
  std::smatch m;
  std::regex re(system.job_id_regex, std::regex::multiline);
  if (std::regex_search(output, m, re) && m.size() > 1) return m[1].str();
  return Status::Unavailable(system.name + " submission printed no job id: " + output);
}

std::vector<JobState> ParseJobStates(const BatchSystem& system, const std::string& output,
                                     const std::vector<std::string>& jobs) {
  std::map<std::string, JobState> seen;  // by normalised id
  std::regex re(system.status_regex);
  std::istringstream lines(output);
  auto in = [](const std::vector<std::string>& states, const std::string& s) {
    return std::find(states.begin(), states.end(), s) != states.end();
  };
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, re) || m.size() < 3) continue;
    std::string state = m[2].str();
    JobState::State st = in(system.running_states, state) ? JobState::kRunning
                         : in(system.queued_states, state) ? JobState::kQueued
                                                           : JobState::kEnded;
    auto [it, fresh] = seen.try_emplace(NormalizeJobId(m[1].str()), JobState{m[1].str(), st, state});
    // An array job: running when any task runs, else waiting when any task waits.
    auto rank = [](JobState::State s) { return s == JobState::kRunning ? 2 : s == JobState::kQueued ? 1 : 0; };
    if (!fresh && rank(st) > rank(it->second.state)) it->second = {it->second.id, st, state};
  }
  std::vector<JobState> out;
  for (const std::string& id : jobs) {
    auto it = seen.find(NormalizeJobId(id));
    if (it == seen.end()) {
      out.push_back({id, JobState::kEnded, "no longer in the queue"});
    } else {
      out.push_back({id, it->second.state, it->second.output});
    }
  }
  return out;
}

}  // namespace ipp::launchers
